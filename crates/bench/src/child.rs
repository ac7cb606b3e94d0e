//! A Fanout service binary (`fanout-scheduler`, `fanout-flows`, `fanout-gateway`, or `fanout`
//! itself for a peer the bench serves) run by the bench as a child process: its CPU and memory
//! stay apart from the bench's, it can be killed and started again, and its `/readyz` and
//! `/metrics` are read over HTTP.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

/// How to start one service: its binary, its arguments, its environment (`FANOUT_…` settings)
/// and its log file.
#[derive(Debug, Clone)]
pub struct Launch {
    exe: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Where the child's stdout and stderr go (appended to across restarts).
    pub log: PathBuf,
}

impl Launch {
    /// The binary `name` beside the running `fanout`, logging to `log`; fails naming the build
    /// command when it is not there.
    pub fn sibling(name: &str, log: PathBuf) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?.with_file_name(name);
        if !exe.exists() {
            bail!(
                "{} not found: build it beside `fanout` with `cargo build --release -p {name}`",
                exe.display()
            );
        }
        Ok(Self { exe, args: Vec::new(), env: Vec::new(), log })
    }

    /// The running `fanout` binary itself (with the arguments given next, e.g. a hidden bench
    /// subcommand), logging to `log`.
    pub fn current(log: PathBuf) -> anyhow::Result<Self> {
        Ok(Self { exe: std::env::current_exe()?, args: Vec::new(), env: Vec::new(), log })
    }

    /// Adds command-line arguments of the child.
    pub fn args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets one environment variable of the child.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_owned(), value.into()));
        self
    }

    fn name(&self) -> String {
        let exe = self.exe.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        match self.args.first() {
            Some(first) => format!("{exe} {first}"),
            None => exe,
        }
    }

    /// Starts the child with `/metrics` and `/readyz` on a free port (`FANOUT_HTTP__LISTEN`).
    pub fn spawn(&self) -> anyhow::Result<Service> {
        let http = free_addr()?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = Command::new(&self.exe)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("FANOUT_HTTP__LISTEN", http.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.exe.display()))?;
        Ok(Service { name: self.name(), child, http })
    }
}

/// A free port on 127.0.0.1 (the kernel's pick, released at once for the child to bind).
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    Ok(SocketAddr::from(([127, 0, 0, 1], port)))
}

/// A running child service.
pub struct Service {
    name: String,
    child: Child,
    http: SocketAddr,
}

impl Service {
    /// Its process id (for `perf record -p`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `VmHWM` and `VmRSS` of `/proc/PID/status`, in MiB.
    pub fn memory(&self) -> anyhow::Result<(f64, f64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|kb| kb.parse::<f64>().ok())
                .map(|kb| kb / 1024.0)
        };
        match (field("VmHWM:"), field("VmRSS:")) {
            (Some(hwm), Some(rss)) => Ok((hwm, rss)),
            _ => bail!("no VmHWM/VmRSS in /proc/{}/status", self.child.id()),
        }
    }

    /// User plus system CPU time the child has used so far (`/proc/PID/stat`, clock ticks of
    /// 10 ms).
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        // Fields after the command name (which may hold spaces, so split after its ')').
        let fields: Vec<&str> =
            stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default().split_whitespace().collect();
        let ticks = |at: usize| fields.get(at).and_then(|t| t.parse::<u64>().ok());
        // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
        match (ticks(11), ticks(12)) {
            (Some(user), Some(system)) => Ok(Duration::from_millis((user + system) * 10)),
            _ => bail!("no utime/stime in /proc/{}/stat", self.child.id()),
        }
    }

    /// Waits until `/readyz` answers 200; fails if the process exits or `timeout` passes.
    pub async fn ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited ({status}) before it was ready", self.name);
            }
            let http = self.http;
            if let Ok(Ok((200, _))) = tokio::task::spawn_blocking(move || get(http, "/readyz")).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{} not ready after {timeout:?}", self.name);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Its `/metrics` text.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let http = self.http;
        let (status, body) = tokio::task::spawn_blocking(move || get(http, "/metrics")).await??;
        if status != 200 {
            bail!("{}'s /metrics answered {status}", self.name);
        }
        Ok(body)
    }

    /// SIGKILL, and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then up to 30 s for it to finish its transaction and exit.
    pub async fn terminate(&mut self) -> anyhow::Result<()> {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                self.kill();
                bail!("{} did not exit within 30 s of SIGTERM", self.name);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // The bench started it; nothing must outlive the run.
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

/// A plain HTTP/1.0 GET: status and body.
fn get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("no HTTP status")?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

/// A histogram's buckets (`le` → cumulative count) from Prometheus text.
pub fn buckets(metrics: &str, name: &str) -> Vec<(f64, f64)> {
    labelled_buckets(metrics, name, "")
}

/// The buckets of one series of a labelled histogram: `labels` are its labels before `le`, in
/// the order the text gives them (alphabetical), each followed by a comma:
/// `outcome="accepted",source="pay",`.
pub fn labelled_buckets(metrics: &str, name: &str, labels: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{{labels}le=\"");
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, count.trim().parse().ok()?))
        })
        .collect()
}

/// A counter's value (a series written out whole, labels included: `name{a="b"}`) from
/// Prometheus text; 0 when it is not there.
pub fn counter(metrics: &str, series: &str) -> f64 {
    let prefix = format!("{series} ");
    metrics.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0)
}

/// The upper bound of the bucket holding quantile `q` of the observations between two scrapes.
pub fn bucket_quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Option<f64> {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, n)| (*le, n - before.iter().find(|(b, _)| b == le).map_or(0.0, |(_, m)| *m)))
        .collect();
    let total = delta.last()?.1;
    (total > 0.0).then(|| delta.iter().find(|(_, n)| *n >= q * total).map_or(f64::INFINITY, |(le, _)| *le))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
fanout_gateway_accept_duration_seconds_bucket{outcome=\"accepted\",source=\"pay\",le=\"0.005\"} 90
fanout_gateway_accept_duration_seconds_bucket{outcome=\"accepted\",source=\"pay\",le=\"0.01\"} 99
fanout_gateway_accept_duration_seconds_bucket{outcome=\"accepted\",source=\"pay\",le=\"+Inf\"} 100
fanout_gateway_accept_duration_seconds_bucket{outcome=\"duplicate\",source=\"pay\",le=\"0.005\"} 7
fanout_gateway_requests_total{outcome=\"accepted\",source=\"pay\"} 100
fanout_gateway_requests_total{outcome=\"duplicate\",source=\"pay\"} 7
";

    #[test]
    fn one_series_of_a_labelled_histogram_and_a_counter_are_read_from_prometheus_text() {
        let accepted = labelled_buckets(
            TEXT,
            "fanout_gateway_accept_duration_seconds",
            "outcome=\"accepted\",source=\"pay\",",
        );
        assert_eq!(accepted, vec![(0.005, 90.0), (0.01, 99.0), (f64::INFINITY, 100.0)]);
        assert_eq!(bucket_quantile(&[], &accepted, 0.99), Some(0.01));
        let series = "fanout_gateway_requests_total{outcome=\"duplicate\",source=\"pay\"}";
        assert_eq!(counter(TEXT, series), 7.0);
        assert_eq!(
            counter(TEXT, "fanout_gateway_requests_total{outcome=\"unroutable\",source=\"pay\"}"),
            0.0
        );
    }
}
