//! The registry with no single point of failure: three `fanout registry serve` processes on one
//! state topic elect a leader; clients register schemas through all three while the leader is
//! killed (`kill -9`). No id is ever given to two schemas, every instance serves the same
//! schema under each id, and writes succeed again through the survivors within seconds.

use std::{
    collections::HashMap,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{ensure, Context};
use fanout_testkit::{stack::Cluster, wait_until};
use serde_json::{json, Value};

use crate::common::{binary, LIMIT};

const SCHEMAS: usize = 300;
const CLIENTS: usize = 6;

fn schema(i: usize) -> String {
    json!({"type": "record", "name": format!("Fault{i}"), "fields": [{"name": "n", "type": "long"}]})
        .to_string()
}

struct Instance {
    url: String,
    child: Child,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_leader_never_gives_an_id_twice_and_writes_resume_through_the_others(
) -> anyhow::Result<()> {
    let cluster = Cluster::up().await?;
    let kafka = cluster.kafka().clone();
    let state = kafka.future_topic("schemas");
    let dir = tempfile::tempdir()?;
    let connection = dir.path().join("kafka.toml");
    let properties: String =
        kafka.properties().iter().map(|(key, value)| format!("\"{key}\" = \"{value}\"\n")).collect();
    std::fs::write(
        &connection,
        format!("[kafka]\nbootstrap = \"{}\"\n[kafka.properties]\n{properties}", kafka.bootstrap()),
    )?;
    let fanout = binary("fanout")?;
    let mut instances = Vec::new();
    for _ in 0..3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(&fanout)
            .args(["registry", "serve", "--listen", &format!("127.0.0.1:{port}"), "--topic", state.name()])
            .arg("--config")
            .arg(&connection)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting fanout registry serve")?;
        instances.push(Instance { url: format!("http://127.0.0.1:{port}"), child });
    }
    let result = run(&mut instances).await;
    for instance in &mut instances {
        if instance.child.try_wait().ok().flatten().is_some() {
            continue; // the killed leader, reaped already
        }
        // SIGTERM: a survivor leaves the election group as it stops.
        let _ = Command::new("kill").args(["-TERM", &instance.child.id().to_string()]).status();
        let _ = instance.child.wait();
    }
    // The killed leader stays a member until its session (6 s) expires.
    let group = format!("_fanout-registry-{}", state.name());
    let deleted = wait_until(Duration::from_secs(30), "the election group to empty and go", || {
        let (kafka, group) = (kafka.clone(), group.clone());
        async move { Ok(kafka.delete_groups(&[&group]).await.is_ok()) }
    })
    .await;
    result.and(deleted)
}

async fn leader_of(http: &reqwest::Client, url: &str) -> Option<String> {
    let answer: Value = http.get(format!("{url}/v1/metadata/leader")).send().await.ok()?.json().await.ok()?;
    answer["leader"].as_str().map(str::to_owned)
}

async fn run(instances: &mut [Instance]) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let urls: Vec<String> = instances.iter().map(|i| i.url.clone()).collect();
    wait_until(LIMIT, "the three instances to agree on a leader", || {
        let (http, urls) = (http.clone(), urls.clone());
        async move {
            let mut leaders = Vec::new();
            for url in &urls {
                leaders.push(leader_of(&http, url).await);
            }
            Ok(leaders[0].is_some() && leaders.iter().all(|l| *l == leaders[0]))
        }
    })
    .await?;

    // Each client registers its share of the schemas, each through the next instance in turn,
    // trying the next one whenever an instance fails to answer 200.
    let ids: Arc<Mutex<HashMap<usize, u64>>> = Arc::default();
    let successes: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (http, urls, ids, successes) = (http.clone(), urls.clone(), ids.clone(), successes.clone());
            tokio::spawn(async move {
                let mut turn = client;
                for i in (client..SCHEMAS).step_by(CLIENTS) {
                    let deadline = Instant::now() + LIMIT;
                    loop {
                        ensure!(Instant::now() < deadline, "schema {i} not registered within {LIMIT:?}");
                        turn += 1;
                        let url = &urls[turn % urls.len()];
                        let answer = http
                            .post(format!("{url}/subjects/fault-leader-{i}/versions"))
                            .json(&json!({"schema": schema(i)}))
                            .send()
                            .await;
                        let Ok(answer) = answer else { continue };
                        if answer.status() != 200 {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                        let body: Value = answer.json().await?;
                        let id = body["id"].as_u64().context("no id in the answer")?;
                        ids.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.insert(i, id);
                        successes.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push(Instant::now());
                        break;
                    }
                }
                anyhow::Ok(())
            })
        })
        .collect();

    let registered = || ids.lock().map(|m| m.len()).unwrap_or(0);
    wait_until(LIMIT, "a third of the schemas registered", || {
        let done = registered() >= SCHEMAS / 3;
        async move { Ok(done) }
    })
    .await?;
    let leader = leader_of(&http, &urls[0]).await.context("no leader before the kill")?;
    let victim =
        instances.iter_mut().position(|i| i.url == leader).context("the leader is not one of ours")?;
    instances[victim].child.kill()?;
    instances[victim].child.wait()?;
    let killed_at = Instant::now();
    let at_kill = registered();
    for client in clients {
        client.await??;
    }

    let survivors: Vec<String> = urls.iter().filter(|u| **u != leader).cloned().collect();
    let new_leader = leader_of(&http, &survivors[0]).await;
    let ids = ids.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    let mut times = successes.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    times.sort();
    let first_after = times.iter().find(|t| **t > killed_at).map(|t| t.duration_since(killed_at));
    let longest_gap = times.windows(2).map(|w| w[1].duration_since(w[0])).max().unwrap_or_default();

    let mut owners: HashMap<u64, usize> = HashMap::new();
    for (schema_index, id) in &ids {
        if let Some(other) = owners.insert(*id, *schema_index) {
            anyhow::bail!("id {id} was given to schema {other} and to schema {schema_index}");
        }
    }
    for url in &survivors {
        for (i, id) in &ids {
            let body: Value = http.get(format!("{url}/schemas/ids/{id}")).send().await?.json().await?;
            let served: Value = serde_json::from_str(body["schema"].as_str().context("no schema")?)?;
            ensure!(
                served["name"] == format!("Fault{i}"),
                "{url} serves {served} under id {id}, not Fault{i}"
            );
        }
    }
    eprintln!(
        "verdict: registry leader kill: killed the leader {leader} after {at_kill} of {SCHEMAS} schemas; new leader \
         {new_leader:?}; first registration after the kill {first_after:?}, longest gap between registrations \
         {longest_gap:?}; {} ids, all distinct, served alike by both survivors",
        ids.len()
    );
    ensure!(ids.len() == SCHEMAS, "{} of {SCHEMAS} schemas registered", ids.len());
    ensure!(new_leader.is_some_and(|l| l != leader), "no survivor leads after the kill");
    ensure!(longest_gap < Duration::from_secs(15), "writes stalled for {longest_gap:?} after the kill");
    Ok(())
}
