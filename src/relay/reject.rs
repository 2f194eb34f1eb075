//! The one place where a refusal becomes an HTTP answer.

use std::fmt;

use crate::rules::Block;

/// Which side a failure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The connecting MISP (or whoever connected).
    Client,
    /// The destination instance.
    Upstream,
    /// The guard itself (a rule, a limit, a resource).
    Guard,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
            Side::Guard => "guard",
        })
    }
}

/// An exchange the guard answers itself instead of relaying.
#[derive(Debug, Clone)]
pub struct Reject {
    /// HTTP status of the answer.
    pub status: u16,
    /// What went wrong, for the log and the answer.
    pub reason: String,
    /// Where it went wrong.
    pub side: Side,
    /// The rule verdict, when a rule blocked.
    pub block: Option<Block>,
    /// The connection's state is unclear afterwards: close it.
    pub close: bool,
}

impl Reject {
    /// A 403 for a request that is not allowed (the connection stays usable).
    pub fn forbidden(reason: impl Into<String>) -> Reject {
        Reject {
            status: 403,
            reason: reason.into(),
            side: Side::Client,
            block: None,
            close: false,
        }
    }

    /// A 403 for a body the rules blocked.
    pub fn blocked(block: Block, side: Side) -> Reject {
        Reject {
            status: 403,
            reason: block.to_string(),
            side,
            block: Some(block),
            close: false,
        }
    }

    /// A failure after which the connection is closed.
    pub fn fatal(status: u16, side: Side, reason: impl Into<String>) -> Reject {
        Reject {
            status,
            reason: reason.into(),
            side,
            block: None,
            close: true,
        }
    }

    /// Build the full answer. A 403 is JSON in MISP's save-fail shape:
    /// MISP parses the body of a refused push and carries on with the next
    /// event; a non-JSON 403 aborts its whole push job (protocol doc §10).
    pub fn to_response(&self, path: &str, close: bool) -> Vec<u8> {
        let message = format!("Blocked by misp-guard: {}", self.reason);
        let body = if self.status == 403 {
            serde_json::json!({
                "saved": false,
                "name": "Blocked by misp-guard",
                "message": message,
                "url": path,
                "errors": message,
            })
        } else {
            serde_json::json!({
                "name": reason_phrase(self.status),
                "message": format!("misp-guard: {}", self.reason),
                "url": path,
            })
        };
        let body = body.to_string();
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            self.status,
            reason_phrase(self.status),
            body.len()
        );
        if close || self.close {
            out.push_str("Connection: close\r\n");
        }
        out.push_str("\r\n");
        out.push_str(&body);
        out.into_bytes()
    }
}

/// Reason phrases for the statuses the guard writes itself.
fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_answer_is_misp_save_fail_json() {
        let r = Reject::forbidden("endpoint not allowed");
        let text = String::from_utf8(r.to_response("/users\"x", false)).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 403 Forbidden\r\n"));
        assert!(head.contains("Content-Type: application/json"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["saved"], false);
        assert_eq!(v["url"], "/users\"x");
        assert!(v["errors"]
            .as_str()
            .unwrap()
            .contains("endpoint not allowed"));
    }

    #[test]
    fn fatal_answer_closes() {
        let r = Reject::fatal(502, Side::Upstream, "connect refused");
        let text = String::from_utf8(r.to_response("/", false)).unwrap();
        assert!(text.starts_with("HTTP/1.1 502 Bad Gateway\r\n"));
        assert!(text.contains("Connection: close\r\n"));
    }
}
