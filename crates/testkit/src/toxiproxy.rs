//! Toxiproxy for the fault tests: a `toxiproxy-server` on a loopback port, proxies created through its HTTP API, and helpers to cut, black-hole, slow and restore one path.
//!
//! The binary is built by `tests/env/build-toxiproxy.sh` (`make tools`); `tests/env/with-env.sh`
//! exports its path as `TOXIPROXY_SERVER`.

use std::{path::PathBuf, process::Stdio, time::Duration};

use anyhow::{Context, Result, bail};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    process::{Child, Command},
};

/// The Toxiproxy version `make tools` builds (tests/env/versions.sh).
pub const TOXIPROXY_VERSION: &str = "v2.5.0";

fn server_bin() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("TOXIPROXY_SERVER") {
        return Ok(PathBuf::from(p));
    }
    let home = std::env::var("HOME").context("HOME is not set")?;
    let cache = std::env::var("KINESIS_OPERATOR_CACHE")
        .unwrap_or_else(|_| format!("{home}/.cache/kinesis-operator"));
    let p = PathBuf::from(cache).join(format!("toxiproxy-{TOXIPROXY_VERSION}/toxiproxy-server"));
    anyhow::ensure!(
        p.exists(),
        "{} is missing: build it with `make tools`",
        p.display()
    );
    Ok(p)
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A `toxiproxy-server` process on 127.0.0.1, killed (by its pid) when dropped.
#[derive(Debug)]
pub struct Toxiproxy {
    child: Child,
    api: String,
}

/// One proxy: listens on a loopback port and forwards to its upstream.
#[derive(Clone, Debug)]
pub struct Proxy {
    api: String,
    name: String,
    /// `127.0.0.1:port` it listens on.
    pub listen: String,
    /// `host:port` it forwards to.
    pub upstream: String,
}

impl Toxiproxy {
    /// Starts the server, logging to `log`, and waits until its API answers.
    pub async fn start(log: &std::path::Path) -> Result<Self> {
        let port = free_port()?;
        let f = std::fs::File::create(log)?;
        let child = Command::new(server_bin()?)
            .args(["-host", "127.0.0.1", "-port", &port.to_string()])
            .stdout(Stdio::from(f.try_clone()?))
            .stderr(Stdio::from(f))
            .kill_on_drop(true)
            .spawn()
            .context("starting toxiproxy-server")?;
        let me = Self {
            child,
            api: format!("127.0.0.1:{port}"),
        };
        crate::wait_until("toxiproxy answers", Duration::from_secs(20), || async {
            Ok(request(&me.api, "GET", "/version", None).await.ok())
        })
        .await?;
        Ok(me)
    }

    /// Creates proxy `name` on a free loopback port, forwarding to `upstream` (`host:port`).
    pub async fn proxy(&self, name: &str, upstream: &str) -> Result<Proxy> {
        let body = serde_json::json!({
            "name": name, "listen": "127.0.0.1:0", "upstream": upstream, "enabled": true
        });
        let created = request(&self.api, "POST", "/proxies", Some(&body)).await?;
        let listen = created["listen"]
            .as_str()
            .context("toxiproxy returned no listen address")?
            .to_owned();
        Ok(Proxy {
            api: self.api.clone(),
            name: name.to_owned(),
            listen,
            upstream: upstream.to_owned(),
        })
    }

    /// The server's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

impl Drop for Toxiproxy {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

impl Proxy {
    /// `http://127.0.0.1:port`.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.listen)
    }

    async fn set_enabled(&self, enabled: bool) -> Result<()> {
        let body = serde_json::json!({ "enabled": enabled });
        request(
            &self.api,
            "POST",
            &format!("/proxies/{}", self.name),
            Some(&body),
        )
        .await?;
        Ok(())
    }

    async fn toxic(
        &self,
        name: &str,
        kind: &str,
        stream: &str,
        attrs: serde_json::Value,
    ) -> Result<()> {
        let body = serde_json::json!({
            "name": name, "type": kind, "stream": stream, "toxicity": 1.0, "attributes": attrs
        });
        request(
            &self.api,
            "POST",
            &format!("/proxies/{}/toxics", self.name),
            Some(&body),
        )
        .await?;
        Ok(())
    }

    /// Cuts the path: closes every connection and refuses new ones (the proxy stops listening).
    pub async fn cut(&self) -> Result<()> {
        self.set_enabled(false).await
    }

    /// Black-holes the path: connections open, but no byte goes through in either direction
    /// (a `timeout` toxic of 0, as a silent network partition).
    pub async fn black_hole(&self) -> Result<()> {
        for s in ["upstream", "downstream"] {
            self.toxic(
                &format!("hole-{s}"),
                "timeout",
                s,
                serde_json::json!({"timeout": 0}),
            )
            .await?;
        }
        Ok(())
    }

    /// Resets every connection with a TCP RST as soon as it sends data.
    pub async fn reset_peer(&self) -> Result<()> {
        self.toxic(
            "reset",
            "reset_peer",
            "upstream",
            serde_json::json!({"timeout": 0}),
        )
        .await
    }

    /// Closes each connection once `bytes` bytes have gone upstream on it (a `limit_data`
    /// toxic): small requests pass, a larger body breaks off.
    pub async fn limit_upstream(&self, bytes: u64) -> Result<()> {
        self.toxic(
            "limit",
            "limit_data",
            "upstream",
            serde_json::json!({ "bytes": bytes }),
        )
        .await
    }

    /// Delays every answer by `latency`.
    pub async fn slow(&self, latency: Duration) -> Result<()> {
        let ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        self.toxic(
            "slow",
            "latency",
            "downstream",
            serde_json::json!({"latency": ms, "jitter": 0}),
        )
        .await
    }

    /// Restores the path: re-enabled, with no toxics.
    pub async fn restore(&self) -> Result<()> {
        self.set_enabled(true).await?;
        let proxy = request(&self.api, "GET", &format!("/proxies/{}", self.name), None).await?;
        for t in proxy["toxics"].as_array().into_iter().flatten() {
            if let Some(name) = t["name"].as_str() {
                request(
                    &self.api,
                    "DELETE",
                    &format!("/proxies/{}/toxics/{name}", self.name),
                    None,
                )
                .await?;
            }
        }
        Ok(())
    }
}

/// One HTTP/1.1 request to the toxiproxy API (`Connection: close`); the JSON answer, a string
/// for a plain-text one, or `null` for an empty one.
async fn request(
    api: &str,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<serde_json::Value> {
    let body = body.map(serde_json::Value::to_string).unwrap_or_default();
    let mut s = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(api))
        .await
        .context("connecting to toxiproxy timed out")??;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .context("toxiproxy did not answer in 5 s")??;
    let text = String::from_utf8_lossy(&out);
    let (head, rest) = text.split_once("\r\n\r\n").context("no HTTP header end")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no HTTP status")?;
    if !(200..300).contains(&status) {
        bail!("toxiproxy {method} {path}: {status} {rest}");
    }
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let payload = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    if payload.trim().is_empty() {
        return Ok(serde_json::Value::Null);
    }
    // `/version` answers in plain text.
    Ok(serde_json::from_str(&payload).unwrap_or(serde_json::Value::String(payload)))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}
