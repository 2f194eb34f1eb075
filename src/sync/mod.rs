//! Step 4 of the path: the table of MISP sync exchanges.
//!
//! (Interface fixed by the skeleton; the table is being written.)

use crate::rules::Document;

/// Whose data an exchange carries, and so whose rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The client sends its data: rules of the source instance.
    Push,
    /// The client fetches the remote's data: rules of the destination.
    Pull,
}

/// One allowed exchange, as classified from a request line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// A stable name for logs, e.g. `events/add`.
    pub name: &'static str,
    /// Push or pull.
    pub direction: Direction,
    /// The document the request body must be; `None`: no body allowed.
    pub request: Option<Document>,
    /// The document the response body must be when the status is 2xx;
    /// `None`: forwarded without inspection.
    pub response: Option<Document>,
}

/// Why a request line is not an allowed sync exchange.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Placeholder until the table is written.
    #[error("endpoint not allowed: {0}")]
    NotInTable(String),
}

/// Classify a request by method and request target (origin-form path and
/// query, as received). `base_path` is the destination instance's path
/// prefix ("" for none).
pub fn classify(method: &str, target: &str, base_path: &str) -> Result<Exchange, Refusal> {
    let _ = (method, base_path);
    Err(Refusal::NotInTable(target.to_string()))
}
