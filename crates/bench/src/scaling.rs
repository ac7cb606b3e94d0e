//! Scenario 6, scaling: the consumer runtime's consume rate (SQLite store, one row inserted per
//! event) on topics of 1, 2 and 4 partitions, with key parallelism on (8 keys of a partition in
//! flight) and off (1: strictly serial per partition), each against a raw `BaseConsumer` reading
//! the same topic in the same repetition.

use super::{
    consume::{prefill, raw_consume, runtime_consume, HandlerKind, RuntimeRun, CONSUME_PAYLOAD},
    env::Env,
    report::{Comparison, Report, Samples, Unit},
    Plan,
};

/// The runtime with the per-event handler and `key_parallelism`.
fn keys(key_parallelism: usize) -> RuntimeRun {
    RuntimeRun { key_parallelism: Some(key_parallelism), ..RuntimeRun::defaults(HandlerKind::PerEvent) }
}

/// Runs the scenario.
pub async fn run(env: &Env, plan: &Plan, report: &mut Report) -> anyhow::Result<()> {
    report.note(format!(
        "scaling: {} events per topic, each run stops after all of them or {:?} after its first event; \
         runtime on SQLite with its defaults and the per-event handler, but key_parallelism 8 (on) or 1 \
         (off); the peer decodes only",
        plan.scaling_events, plan.scaling_cap
    ));
    for &partitions in &plan.scaling_partitions {
        let topic = env.topic(&format!("scaling-{partitions}p"), partitions).await?;
        prefill(env, &topic, plan.scaling_events, CONSUME_PAYLOAD).await?;
        let (mut raw, mut on, mut off) = (Samples::new(), Samples::new(), Samples::new());
        for rep in 0..plan.scaling_reps {
            if rep % 2 == 0 {
                raw.push(raw_consume(env, &topic, plan.scaling_events, plan.scaling_cap).await?);
            }
            let store = env.sqlite_store("scaling");
            on.push(
                runtime_consume(env, &topic, &store, keys(8), plan.scaling_events, plan.scaling_cap).await?,
            );
            let store = env.sqlite_store("scaling");
            off.push(
                runtime_consume(env, &topic, &store, keys(1), plan.scaling_events, plan.scaling_cap).await?,
            );
            if rep % 2 == 1 {
                raw.push(raw_consume(env, &topic, plan.scaling_events, plan.scaling_cap).await?);
            }
        }
        for (name, samples) in [("runtime, key-parallel 8", on), ("runtime, key-parallel 1", off)] {
            report.compare(Comparison {
                scenario: "6 scaling".into(),
                metric: format!("{partitions} partition(s), events/s"),
                fanout: (name.into(), samples),
                peer: ("BaseConsumer".into(), raw.clone()),
                unit: Unit::PerSecond,
                target: None,
                floor: None,
            });
        }
        env.cleanup().await;
    }
    Ok(())
}
