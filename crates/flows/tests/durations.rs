//! The fourth pain of a timetable: changing how long a task takes means re-planning every slot
//! after it. Here the same flow file serves a run whose upstream takes 0.2 s and one whose
//! upstream takes 5 s: in both the dependant starts right after it, and no file changes.

mod common;

use std::{path::Path, time::Duration};

use common::{InProcess, InProcessWorker};
use fanout_flows::signals::RunRequested;
use fanout_producer::{PublishOptions, Publisher};
use fanout_testkit::{service::Stack, wait_until};

/// `extract` sleeps as long as its run's input file says; `load` runs after it. Neither names a
/// time.
fn flow(out: &Path) -> String {
    let out = out.display();
    format!(
        r#"
name = "etl"
[[tasks]]
name = "extract"
command = ["sh", "-c", "date +%s%N > \"$OUT/started-$FANOUT_RUN\"; sleep $(cat \"$OUT/seconds-$FANOUT_RUN\"); date +%s%N > \"$OUT/extract-$FANOUT_RUN\""]
env = {{ OUT = "{out}" }}
[[tasks]]
name = "load"
after = ["extract"]
command = ["sh", "-c", "date +%s%N > \"$OUT/load-$FANOUT_RUN\""]
env = {{ OUT = "{out}" }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_longer_or_shorter_upstream_needs_no_change_to_any_file() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let kafka = stack.kafka.clone();
    let out = tempfile::tempdir()?;
    let engine = InProcess::start(&stack, &flow(out.path())).await?;
    let flow_file = std::fs::read(&engine.config.flows)?;
    let topics = engine.config.topics();
    let worker = InProcessWorker::start(&engine, 4)?;
    let publisher = Publisher::new(stack.publisher_config("flow-durations-test"))?;
    let requested = PublishOptions::new().topic(&topics.requested);

    let file = |name: &str| out.path().join(name);
    let stamp_ns =
        |name: &str| -> anyhow::Result<i128> { Ok(std::fs::read_to_string(file(name))?.trim().parse()?) };
    let mut extract_took = Vec::new();
    for (run, seconds) in [("quick", "0.2"), ("slow", "5")] {
        std::fs::write(file(&format!("seconds-{run}")), seconds)?;
        let request = RunRequested {
            flow: "etl".into(),
            run: run.into(),
            retry_task: None,
            cascade: false,
            requested_by: "test".into(),
        };
        publisher.publish_with(&request, &requested).await?;
        wait_until(Duration::from_secs(60), "load to run after extract", || async {
            Ok(file(&format!("load-{run}")).exists())
        })
        .await?;
        let (extract, load) = (stamp_ns(&format!("extract-{run}"))?, stamp_ns(&format!("load-{run}"))?);
        assert!(load >= extract, "{run}: load ran before extract finished");
        // Whatever extract took, load follows it: no slot to wait for. The bound only has to
        // be far below the 4.8 s between the two runs' extracts (a slot sized for the slow one
        // would keep the quick run's load waiting that long); it covers a worker's poll, two
        // transactions and a process start on a loaded machine.
        let gap = Duration::from_nanos((load - extract) as u64);
        assert!(gap < Duration::from_secs(3), "{run}: load started {gap:?} after extract finished");
        // Its own running time, from its first line to its last: the time from the request to
        // its start (a poll, a process start) varies with the machine's load, and CI once saw
        // the quick run wait 1 s more for it than the slow one.
        extract_took.push(extract - stamp_ns(&format!("started-{run}"))?);
    }
    assert!(
        extract_took[1] - extract_took[0] > 4_000_000_000,
        "the slow run's extract took over 4 s longer, so its load moved with it: {extract_took:?} ns"
    );
    assert_eq!(std::fs::read(&engine.config.flows)?, flow_file, "the flow file changed");

    worker.stop(&kafka).await?;
    engine.stop(&kafka).await?;
    stack.stop().await
}
