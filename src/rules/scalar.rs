//! What a scalar of a document is, as the walk hands it to the rules:
//! numbers kept as text and read the way PHP's `json_decode` reads them.

/// A JSON scalar as the tokenizer hands it over. Numbers stay text, read
/// here the way PHP's `json_decode` would matter to a rule.
#[derive(Debug, Clone, Copy)]
pub(super) enum Scalar<'s> {
    Null,
    Bool(bool),
    /// Number text, RFC 8259 grammar already checked.
    Num(&'s str),
    Str(&'s str),
    /// A string longer than a rule field may be: its first bytes.
    Long(&'s str),
}

impl Scalar<'_> {
    pub(super) fn render(&self) -> String {
        match self {
            Scalar::Null => "null".to_string(),
            Scalar::Bool(b) => b.to_string(),
            // As the number reads: integers as they are, others as the
            // double PHP makes of them (`1e0` is `1.0`).
            Scalar::Num(t) if is_integer(t) => (*t).to_string(),
            Scalar::Num(t) => match t.parse::<f64>() {
                Ok(f) => format!("{f:?}"),
                Err(_) => (*t).to_string(),
            },
            Scalar::Str(s) | Scalar::Long(s) => format!("{s:?}"),
        }
    }

    pub(super) fn what(&self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::Bool(_) => "a boolean",
            Scalar::Num(_) => "a number",
            Scalar::Str(_) | Scalar::Long(_) => "a string",
        }
    }

    /// A whole number that fits 64 bits (what PHP reads as an integer):
    /// no fraction, no exponent.
    pub(super) fn integer(&self) -> bool {
        matches!(self, Scalar::Num(t) if is_integer(t))
    }

    /// The number `1` or the string `"1"`, spelled so.
    pub(super) fn one(&self) -> bool {
        matches!(self, Scalar::Num("1") | Scalar::Str("1"))
    }
}

/// Whether number text is a whole number of 64 bits: `1.0`, `1e0` and
/// anything past 64 bits are doubles to PHP's `json_decode`. `-0` is
/// counted a double as serde_json (the tests' oracle) counts it; PHP makes
/// it `0`, but no rule accepts a signed value, so either reading refuses
/// it.
fn is_integer(t: &str) -> bool {
    match t.strip_prefix('-') {
        Some("0") => false,
        Some(_) => t.parse::<i64>().is_ok(),
        None => t.parse::<u64>().is_ok(),
    }
}
