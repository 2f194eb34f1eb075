//! Beside the path: the admin listener (`guard.admin.listen`, loopback
//! only, off by default) serving `GET /metrics` (Prometheus text, see
//! [`crate::telemetry::metrics`]) and `GET /healthz` (200 `ready`, or 503
//! and why not).
//!
//! It is not the data plane: one request per connection, answered and
//! closed, a few connections at a time, a short deadline on the head.
//! Refuses (and closes): a head over 8 KiB or not complete in time (408),
//! a method other than GET or HEAD (405), any other path (404).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::telemetry::metrics::metrics;

/// The longest request head read.
const MAX_HEAD: usize = 8 * 1024;

/// How long a client may take to send its head.
const HEAD_WAIT: Duration = Duration::from_secs(5);
/// How long writing one answer may take.
const WRITE_WAIT: Duration = Duration::from_secs(10);

/// Connections answered at once; more wait in the kernel's backlog.
const SLOTS: usize = 8;

/// OpenMetrics text, which Prometheus scrapes and which is what
/// prometheus-client writes (`# EOF` at the end).
const METRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serve `listener` until `shutdown`.
pub async fn run(listener: TcpListener, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(SLOTS));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = shutdown.cancelled() => return,
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.cancelled() => return,
        };
        match accepted {
            Ok((stream, _)) => {
                tokio::spawn(async move {
                    answer(stream).await;
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "admin listener: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Read one head, write one answer, close.
async fn answer(mut stream: TcpStream) {
    let reply = match tokio::time::timeout(HEAD_WAIT, read_head(&mut stream)).await {
        Ok(Some((method, path))) => route(&method, &path),
        Ok(None) => Reply::text(400, "Bad Request", "bad request\n"),
        Err(_) => Reply::text(408, "Request Timeout", "request head timed out\n"),
    };
    // A client that does not read its answer must not keep the slot.
    let write = async {
        stream.write_all(&reply.bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(WRITE_WAIT, write).await;
}

/// The method and path of the request head, `None` when there is no
/// complete, parsable head within [`MAX_HEAD`].
async fn read_head(stream: &mut TcpStream) -> Option<(String, String)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                return Some((req.method?.to_owned(), req.path?.to_owned()));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            _ => return None,
        }
    }
}

fn route(method: &str, path: &str) -> Reply {
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Reply::text(405, "Method Not Allowed", "only GET and HEAD\n"),
    };
    let path = path.split('?').next().unwrap_or(path);
    let mut reply = match path {
        "/metrics" => Reply {
            status: 200,
            reason: "OK",
            content_type: METRICS_TYPE,
            body: metrics().text(),
            head_only: false,
        },
        "/healthz" => match metrics().health() {
            Ok(()) => Reply::text(200, "OK", "ready\n"),
            Err(why) => Reply::text(503, "Service Unavailable", &format!("{why}\n")),
        },
        _ => Reply::text(404, "Not Found", "only /metrics and /healthz\n"),
    };
    reply.head_only = head_only;
    reply
}

struct Reply {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    body: String,
    head_only: bool,
}

impl Reply {
    fn text(status: u16, reason: &'static str, body: &str) -> Reply {
        Reply {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            body: body.to_owned(),
            head_only: false,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if !self.head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}
