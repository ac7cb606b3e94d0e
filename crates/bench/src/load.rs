//! HTTP load for the gateway scenario: prepared requests sent over keep-alive HTTP/1.1
//! connections, closed loop (as fast as the server answers) or open loop (on a fixed schedule).
//!
//! Each connection is a hyper client connection of its own, driven by one worker task: the count
//! of connections is exact (no pool grows or shrinks it), and a request costs the client no URL
//! parsing, pool lookup or middleware, which matters when the client shares two cores with the
//! server, the broker and PostgreSQL. Requests are prepared (bodies written and signed) before
//! the timed part, so the client's per-request work during it is building the request from
//! prepared header values and reading the answer.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt as _, Full};
use hyper::{
    client::conn::http1::SendRequest,
    header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST},
    Method, Request, StatusCode, Uri,
};
use hyper_util::rt::TokioIo;
use tokio::{
    net::TcpStream,
    sync::{mpsc, Mutex},
    task::JoinSet,
};

/// A request that gets no answer within this counts as an error (and its connection is
/// replaced).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One request, ready to send: its body and its headers besides `Host` and `Content-Type`.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The JSON body.
    pub body: Bytes,
    /// The signature headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// Where the requests go: `POST http://{addr}{path}`.
#[derive(Debug, Clone)]
pub struct Endpoint {
    addr: SocketAddr,
    path: Uri,
    host: HeaderValue,
}

impl Endpoint {
    /// `path` (origin form, e.g. `/callbacks/pay`) on `addr`.
    pub fn new(addr: SocketAddr, path: &str) -> anyhow::Result<Self> {
        Ok(Self { addr, path: path.parse()?, host: HeaderValue::try_from(addr.to_string())? })
    }
}

/// What became of the requests of a run that were not answered 2xx, by kind (`HTTP 503`, the
/// transport error, `no answer within 10 s`).
#[derive(Debug, Default, Clone)]
pub struct Errors(BTreeMap<String, u64>);

impl Errors {
    fn add(&mut self, kind: String) {
        *self.0.entry(kind).or_default() += 1;
    }

    fn merge(&mut self, other: Errors) {
        for (kind, n) in other.0 {
            *self.0.entry(kind).or_default() += n;
        }
    }

    /// How many requests were not answered 2xx.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// `12 × HTTP 503, 1 × no answer within 10 s`.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (kind, n) in &self.0 {
            if !out.is_empty() {
                out.push_str(", ");
            }
            let _ = write!(out, "{n} × {kind}");
        }
        out
    }
}

/// A closed-loop run: every connection sends its next request as soon as the previous one is
/// answered.
#[derive(Debug)]
pub struct ClosedLoop {
    /// 2xx answers that arrived within the measured window.
    pub ok_in_window: u64,
    /// The window.
    pub window: Duration,
    /// Every 2xx answer, those to requests still in flight when the window closed included.
    pub ok: u64,
    /// Everything else.
    pub errors: Errors,
}

impl ClosedLoop {
    /// 2xx answers per second within the window.
    pub fn rate(&self) -> f64 {
        self.ok_in_window as f64 / self.window.as_secs_f64()
    }
}

/// An open-loop run: requests sent on schedule whatever the answers.
#[derive(Debug)]
pub struct OpenLoop {
    /// Scheduled send time → 2xx answer, µs, of every 2xx.
    pub latency: Histogram<u64>,
    /// 2xx answers.
    pub ok: u64,
    /// Everything else.
    pub errors: Errors,
}

type Sender = SendRequest<Full<Bytes>>;

/// A new keep-alive connection to `addr`, its hyper connection task driving it.
async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the server closes; a request on it then fails and
        // is counted there.
        let _ = connection.await;
    });
    Ok(sender)
}

async fn connect_all(addr: SocketAddr, connections: usize) -> anyhow::Result<Vec<Sender>> {
    let mut senders = Vec::with_capacity(connections);
    for _ in 0..connections {
        senders.push(connect(addr).await?);
    }
    Ok(senders)
}

/// Sends one request and reads its whole answer (so the connection can carry the next); its
/// status, or what went wrong.
async fn send(sender: &mut Sender, endpoint: &Endpoint, prepared: &Prepared) -> Result<StatusCode, String> {
    let exchange = async {
        sender.ready().await?;
        let mut request = Request::new(Full::new(prepared.body.clone()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = endpoint.path.clone();
        let headers = request.headers_mut();
        headers.insert(HOST, endpoint.host.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in &prepared.headers {
            headers.insert(name.clone(), value.clone());
        }
        let response = sender.send_request(request).await?;
        let status = response.status();
        response.into_body().collect().await?;
        Ok::<_, hyper::Error>(status)
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(error)) => Err(format!("transport: {error}")),
        Err(_) => Err(format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())),
    }
}

/// What one worker saw.
#[derive(Default)]
struct Tally {
    ok: u64,
    ok_in_window: u64,
    errors: Errors,
}

impl Tally {
    /// Counts one exchange; on a transport failure or timeout the connection is replaced.
    async fn count(
        &mut self,
        result: Result<StatusCode, String>,
        sender: &mut Sender,
        addr: SocketAddr,
    ) -> anyhow::Result<bool> {
        match result {
            Ok(status) if status.is_success() => {
                self.ok += 1;
                Ok(true)
            }
            Ok(status) => {
                self.errors.add(format!("HTTP {}", status.as_u16()));
                Ok(false)
            }
            Err(kind) => {
                self.errors.add(kind);
                *sender = connect(addr).await?;
                Ok(false)
            }
        }
    }
}

/// `connections` connections send `requests` in order, each its next as soon as its previous
/// one is answered, for `duration` from the moment all are connected; requests in flight then
/// are still answered and counted in [`ClosedLoop::ok`]. Fails if `requests` run out first.
pub async fn closed_loop(
    endpoint: &Endpoint,
    requests: Arc<Vec<Prepared>>,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<ClosedLoop> {
    let senders = connect_all(endpoint.addr, connections).await?;
    let next = Arc::new(AtomicUsize::new(0));
    let exhausted = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = JoinSet::new();
    for mut sender in senders {
        let (endpoint, requests, next, exhausted) =
            (endpoint.clone(), requests.clone(), next.clone(), exhausted.clone());
        workers.spawn(async move {
            let mut tally = Tally::default();
            while Instant::now() < deadline {
                let Some(prepared) = requests.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    exhausted.store(true, Ordering::Relaxed);
                    break;
                };
                let result = send(&mut sender, &endpoint, prepared).await;
                if tally.count(result, &mut sender, endpoint.addr).await? && Instant::now() <= deadline {
                    tally.ok_in_window += 1;
                }
            }
            anyhow::Ok(tally)
        });
    }
    let mut run = ClosedLoop { ok_in_window: 0, window: duration, ok: 0, errors: Errors::default() };
    while let Some(tally) = workers.join_next().await {
        let tally = tally??;
        run.ok += tally.ok;
        run.ok_in_window += tally.ok_in_window;
        run.errors.merge(tally.errors);
    }
    if exhausted.load(Ordering::Relaxed) {
        bail!(
            "the {} prepared requests ran out before {duration:?} passed ({} answered 2xx; {}); prepare more",
            requests.len(),
            run.ok,
            if run.errors.total() == 0 { "no errors".to_owned() } else { run.errors.describe() }
        );
    }
    Ok(run)
}

/// Sends `requests` at `rate` per second, each at its scheduled time whether or not earlier ones
/// were answered, over up to `connections` connections (a request waits for a free one, and that
/// wait counts in its latency), and measures each from its scheduled time to its answer: a stall
/// shows as the latency of every request scheduled during it, not as fewer requests sent
/// (no coordinated omission).
pub async fn open_loop(
    endpoint: &Endpoint,
    requests: Arc<Vec<Prepared>>,
    connections: usize,
    rate: f64,
) -> anyhow::Result<OpenLoop> {
    let senders = connect_all(endpoint.addr, connections).await?;
    let (due_tx, due_rx) = mpsc::unbounded_channel::<(usize, Instant)>();
    let due_rx = Arc::new(Mutex::new(due_rx));
    let mut workers = JoinSet::new();
    for mut sender in senders {
        let (endpoint, requests, due_rx) = (endpoint.clone(), requests.clone(), due_rx.clone());
        workers.spawn(async move {
            let mut tally = Tally::default();
            let mut latency = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
            loop {
                let next = due_rx.lock().await.recv().await;
                let Some((i, due)) = next else { break };
                let Some(prepared) = requests.get(i) else { break };
                let result = send(&mut sender, &endpoint, prepared).await;
                let took = due.elapsed();
                if tally.count(result, &mut sender, endpoint.addr).await? {
                    latency.saturating_record(took.as_micros().max(1) as u64);
                }
            }
            anyhow::Ok((tally, latency))
        });
    }
    // The schedule is kept by a thread of its own: a sleeping thread wakes within tens of µs,
    // where tokio's timer rounds every sleep up to the next millisecond.
    let count = requests.len();
    let start = Instant::now() + Duration::from_millis(10);
    let pacer = tokio::task::spawn_blocking(move || {
        for i in 0..count {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if due_tx.send((i, due)).is_err() {
                break;
            }
        }
    });
    pacer.await?;
    let mut run = OpenLoop {
        latency: Histogram::new_with_bounds(1, 600_000_000, 3)?,
        ok: 0,
        errors: Errors::default(),
    };
    while let Some(done) = workers.join_next().await {
        let (tally, latency) = done??;
        run.ok += tally.ok;
        run.errors.merge(tally.errors);
        run.latency.add(latency)?;
    }
    Ok(run)
}
