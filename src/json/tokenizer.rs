//! The resumable state machine. One call to `run` tokenizes one piece of
//! validated UTF-8; the hot paths (a `,"key":value` pair, a string body, a
//! run of digits) go through to their end inside one piece without storing
//! state, and only the point where a piece runs out is written down.

use super::scan::{self, Escape, MAX_ESCAPE};
use super::{Error, ErrorKind, Limits, Literal, Sink, SyntaxError};

/// Where the tokenizer stands between two bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A value must come: at the top, after `:`, after `,` in an array.
    Value,
    /// After `[`: a value or `]`.
    ArrayFirst,
    /// After `{`: a key or `}`.
    ObjectFirst,
    /// After `,` in an object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// After a value in an object: `,` or `}`.
    ObjectNext,
    /// After a value in an array: `,` or `]`.
    ArrayNext,
    /// After the top-level value: whitespace only.
    Done,
    /// Inside a key (its text so far in `key`, maybe an escape in `esc`).
    KeyBody,
    /// Inside a string value (maybe an escape in `esc`).
    StringBody,
    /// Inside a number (its text so far in `num`).
    Number,
    /// Inside a literal, `matched` bytes of it seen.
    Literal { lit: Literal, matched: u8 },
    /// A string, number or literal just ended: what follows depends on the
    /// enclosing container, which the object and array loops know already
    /// (never stored between pieces).
    Scalar,
}

/// The tokenizer. See the [module docs](super) for what it accepts and
/// what it hands to the [`Sink`].
#[derive(Debug)]
pub struct Tokenizer {
    limits: Limits,
    state: State,
    /// One entry per open container: `true` for an object.
    stack: Vec<bool>,
    /// Bytes fed so far: the stream offset of the next chunk's first byte.
    fed: u64,
    /// A UTF-8 sequence the last chunk ended inside, and where it starts.
    utf8: [u8; 4],
    utf8_len: usize,
    utf8_at: u64,
    /// An escape the last piece ended inside, and where its `\` is.
    esc: [u8; MAX_ESCAPE],
    esc_len: usize,
    esc_at: u64,
    /// The key being read when it has escapes or spans pieces.
    key: String,
    key_at: u64,
    /// A number spanning pieces.
    num: String,
    num_at: u64,
    lit_at: u64,
    /// The syntax error a step stopped at.
    error: SyntaxError,
    /// Set once a call failed or `finish` ran: every later call refuses.
    closed: Option<SyntaxError>,
}

/// One piece of input: validated text, where it starts in the stream, and
/// how far the tokenizer got in it.
struct Cursor<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
    base: u64,
}

impl<'a> Cursor<'a> {
    #[inline(always)]
    fn off(&self, i: usize) -> u64 {
        self.base + i as u64
    }

    #[inline(always)]
    fn at(&self, i: usize) -> Option<u8> {
        self.b.get(i).copied()
    }

    /// The byte at the cursor once whitespace is skipped.
    #[inline(always)]
    fn token(&mut self) -> Option<u8> {
        match self.at(self.i) {
            Some(x) if x > b' ' => Some(x),
            _ => {
                self.i = scan::skip_ws(self.b, self.i);
                self.at(self.i)
            }
        }
    }
}

/// Why a step stopped early: a syntax error (kept in `Tokenizer::error`,
/// so this stays small enough for a register) or the sink's error.
struct Halt<E>(Option<E>);

type Step<E> = Result<State, Halt<E>>;

/// A sink call whose error stops the parse.
macro_rules! emit {
    ($call:expr) => {
        $call.map_err(|e| Halt(Some(e)))?
    };
}

impl Tokenizer {
    /// A tokenizer for one document.
    pub fn new(limits: Limits) -> Tokenizer {
        Tokenizer {
            limits,
            state: State::Value,
            stack: Vec::with_capacity(limits.max_depth.min(64)),
            fed: 0,
            utf8: [0; 4],
            utf8_len: 0,
            utf8_at: 0,
            esc: [0; MAX_ESCAPE],
            esc_len: 0,
            esc_at: 0,
            key: String::new(),
            key_at: 0,
            num: String::new(),
            num_at: 0,
            lit_at: 0,
            error: SyntaxError {
                kind: ErrorKind::Closed,
                offset: 0,
            },
            closed: None,
        }
    }

    /// Tokenizes the next chunk of the document, of any size, calling the
    /// sink for every token it completes (or, for strings, every fragment).
    /// After an error, every later call refuses.
    pub fn feed<S: Sink>(&mut self, chunk: &[u8], sink: &mut S) -> Result<(), Error<S::Error>> {
        if let Some(e) = self.closed {
            return Err(Error::Syntax(e));
        }
        let r = self.feed_chunk(chunk, sink);
        self.outcome(r)
    }

    /// Ends the document: refuses it if it is empty, truncated, or ends
    /// inside a UTF-8 sequence; hands over a number that ran to the end.
    pub fn finish<S: Sink>(&mut self, sink: &mut S) -> Result<(), Error<S::Error>> {
        if let Some(e) = self.closed {
            return Err(Error::Syntax(e));
        }
        let r = self.finish_document(sink);
        let r = self.outcome(r);
        if r.is_ok() {
            self.closed = Some(SyntaxError {
                kind: ErrorKind::Closed,
                offset: self.fed,
            });
        }
        r
    }

    /// The public form of a result; after an error, the tokenizer is closed.
    fn outcome<E>(&mut self, r: Result<(), Halt<E>>) -> Result<(), Error<E>> {
        let Err(Halt(stop)) = r else {
            return Ok(());
        };
        match stop {
            None => {
                self.closed = Some(self.error);
                Err(Error::Syntax(self.error))
            }
            Some(e) => {
                self.closed = Some(SyntaxError {
                    kind: ErrorKind::Closed,
                    offset: self.fed,
                });
                Err(Error::Sink(e))
            }
        }
    }

    /// Records a syntax error; the caller returns the `Halt`.
    #[cold]
    #[inline(never)]
    fn fail<E>(&mut self, kind: ErrorKind, offset: u64) -> Halt<E> {
        self.error = SyntaxError { kind, offset };
        Halt(None)
    }

    fn finish_document<S: Sink>(&mut self, sink: &mut S) -> Result<(), Halt<S::Error>> {
        if self.utf8_len > 0 {
            return Err(self.fail(ErrorKind::InvalidUtf8, self.utf8_at));
        }
        if self.state == State::Number {
            self.state = match self.end_number(sink)? {
                State::Scalar => self.after_value(),
                other => other,
            };
        }
        match self.state {
            State::Done => Ok(()),
            State::Value if self.stack.is_empty() => Err(self.fail(ErrorKind::Empty, self.fed)),
            _ => Err(self.fail(ErrorKind::Truncated, self.fed)),
        }
    }

    /// Validates the chunk's UTF-8 in one pass, then tokenizes it; a
    /// sequence the chunk ends inside is kept for the next one.
    fn feed_chunk<S: Sink>(&mut self, chunk: &[u8], sink: &mut S) -> Result<(), Halt<S::Error>> {
        let mut at = self.fed;
        self.fed += chunk.len() as u64;
        let mut rest = chunk;
        if self.utf8_len > 0 {
            rest = self.finish_utf8(rest, sink)?;
            if self.utf8_len > 0 {
                return Ok(());
            }
            at = self.fed - rest.len() as u64;
        }
        let (body, tail) = rest.split_at(scan::utf8_cut(rest));
        match simdutf8::basic::from_utf8(body) {
            Ok(text) => self.run(text, at, sink)?,
            Err(_) => {
                // Tokenize what comes before the bad byte first, so an
                // earlier error is the one reported.
                let valid =
                    simdutf8::compat::from_utf8(body).map_or_else(|e| e.valid_up_to(), |_| 0);
                let Ok(text) = std::str::from_utf8(&body[..valid]) else {
                    return Err(self.fail(ErrorKind::InvalidUtf8, at));
                };
                self.run(text, at, sink)?;
                return Err(self.fail(ErrorKind::InvalidUtf8, at + valid as u64));
            }
        }
        self.utf8[..tail.len()].copy_from_slice(tail);
        self.utf8_len = tail.len();
        self.utf8_at = at + body.len() as u64;
        Ok(())
    }

    /// Completes the carried UTF-8 sequence from the start of `rest` and
    /// tokenizes it as a piece of its own; returns what is left of `rest`.
    fn finish_utf8<'c, S: Sink>(
        &mut self,
        rest: &'c [u8],
        sink: &mut S,
    ) -> Result<&'c [u8], Halt<S::Error>> {
        let width = scan::utf8_width(self.utf8[0]);
        let take = width.saturating_sub(self.utf8_len).min(rest.len());
        self.utf8[self.utf8_len..self.utf8_len + take].copy_from_slice(&rest[..take]);
        self.utf8_len += take;
        if self.utf8_len < width {
            return Ok(&rest[take..]);
        }
        let bytes = self.utf8;
        let Ok(text) = std::str::from_utf8(&bytes[..width]) else {
            return Err(self.fail(ErrorKind::InvalidUtf8, self.utf8_at));
        };
        self.utf8_len = 0;
        self.run(text, self.utf8_at, sink)?;
        Ok(&rest[take..])
    }

    /// Tokenizes one piece of validated text starting at stream offset
    /// `base`.
    fn run<S: Sink>(&mut self, text: &str, base: u64, sink: &mut S) -> Result<(), Halt<S::Error>> {
        let mut c = Cursor {
            text,
            b: text.as_bytes(),
            i: 0,
            base,
        };
        let mut state = self.state;
        while c.i < c.b.len() {
            state = self.step(state, &mut c, sink)?;
        }
        if state == State::Scalar {
            state = self.after_value();
        }
        self.state = state;
        Ok(())
    }

    /// Goes on from `state` as far as it can, and says where it stopped.
    #[inline(always)]
    fn step<S: Sink>(&mut self, state: State, c: &mut Cursor<'_>, sink: &mut S) -> Step<S::Error> {
        match state {
            State::ObjectNext => self.object_next(c, sink),
            State::ArrayNext => self.array_next(c, sink),
            State::ObjectFirst => match c.token() {
                Some(b'"') => self.key_start(c, sink),
                Some(b'}') => self.close(true, c, sink),
                Some(_) => Err(self.fail(ErrorKind::ExpectedKeyOrEnd, c.off(c.i))),
                None => Ok(state),
            },
            State::ArrayFirst => match c.token() {
                Some(b']') => self.close(false, c, sink),
                Some(_) => self.value(c, sink),
                None => Ok(state),
            },
            State::Value => match c.token() {
                Some(_) => self.value(c, sink),
                None => Ok(state),
            },
            State::StringBody => {
                // A new piece may go on with an escape the last one cut.
                if self.esc_len > 0 {
                    let at = self.esc_at;
                    match self.escape_more(c)? {
                        Some(ch) => emit!(sink.string_fragment(ch.encode_utf8(&mut [0; 4]), at)),
                        None => return Ok(State::StringBody),
                    }
                }
                self.string_body(c, sink)
            }
            State::Key => match c.token() {
                Some(b'"') => self.key_start(c, sink),
                Some(_) => Err(self.fail(ErrorKind::ExpectedKey, c.off(c.i))),
                None => Ok(state),
            },
            State::Colon => self.colon(c, sink),
            State::Done => match c.token() {
                Some(_) => Err(self.fail(ErrorKind::TrailingBytes, c.off(c.i))),
                None => Ok(state),
            },
            State::KeyBody => self.key_body(c, sink),
            State::Number => self.number_more(c, sink),
            State::Literal { lit, matched } => self.literal(lit, matched, c, sink),
            State::Scalar => Ok(self.after_value()),
        }
    }

    /// What follows a complete value: the enclosing container's next.
    #[inline(always)]
    fn after_value(&self) -> State {
        match self.stack.last() {
            None => State::Done,
            Some(true) => State::ObjectNext,
            Some(false) => State::ArrayNext,
        }
    }

    /// After a value in an object. The common run `,"key":value,"key":...`
    /// loops here without going back through the dispatch.
    #[inline(always)]
    fn object_next<S: Sink>(&mut self, c: &mut Cursor<'_>, sink: &mut S) -> Step<S::Error> {
        loop {
            let next = match c.token() {
                None => return Ok(State::ObjectNext),
                Some(b',') => {
                    c.i += 1;
                    if c.at(c.i) != Some(b'"') {
                        return Ok(State::Key);
                    }
                    self.key_start(c, sink)?
                }
                Some(b'}') => self.close(true, c, sink)?,
                Some(_) => return Err(self.fail(ErrorKind::ExpectedCommaOrBrace, c.off(c.i))),
            };
            if !matches!(next, State::Scalar | State::ObjectNext) {
                return Ok(next);
            }
        }
    }

    /// After a value in an array.
    #[inline(always)]
    fn array_next<S: Sink>(&mut self, c: &mut Cursor<'_>, sink: &mut S) -> Step<S::Error> {
        loop {
            let next = match c.token() {
                None => return Ok(State::ArrayNext),
                Some(b',') => {
                    c.i += 1;
                    match c.token() {
                        Some(_) => self.value(c, sink)?,
                        None => return Ok(State::Value),
                    }
                }
                Some(b']') => self.close(false, c, sink)?,
                Some(_) => return Err(self.fail(ErrorKind::ExpectedCommaOrBracket, c.off(c.i))),
            };
            if !matches!(next, State::Scalar | State::ArrayNext) {
                return Ok(next);
            }
        }
    }

    /// A value starts at `c.i` (a byte that is not whitespace).
    #[inline(always)]
    fn value<S: Sink>(&mut self, c: &mut Cursor<'_>, sink: &mut S) -> Step<S::Error> {
        let at = c.off(c.i);
        let rest = c.b.get(c.i..).unwrap_or_default();
        match rest.first() {
            Some(b'"') => {
                emit!(sink.begin_string(at));
                c.i += 1;
                self.string_body(c, sink)
            }
            Some(b'{') => self.open(true, c, sink),
            Some(b'[') => self.open(false, c, sink),
            Some(b'-' | b'0'..=b'9') => self.number(c, sink),
            Some(b't') if rest.starts_with(b"true") => {
                emit!(sink.literal(Literal::True, at));
                c.i += 4;
                Ok(State::Scalar)
            }
            Some(b'f') if rest.starts_with(b"false") => {
                emit!(sink.literal(Literal::False, at));
                c.i += 5;
                Ok(State::Scalar)
            }
            Some(b'n') if rest.starts_with(b"null") => {
                emit!(sink.literal(Literal::Null, at));
                c.i += 4;
                Ok(State::Scalar)
            }
            Some(b't') => self.literal(Literal::True, 0, c, sink),
            Some(b'f') => self.literal(Literal::False, 0, c, sink),
            Some(b'n') => self.literal(Literal::Null, 0, c, sink),
            Some(_) if at == 0 && rest.starts_with("\u{feff}".as_bytes()) => {
                Err(self.fail(ErrorKind::ByteOrderMark, at))
            }
            Some(_) => Err(self.fail(ErrorKind::ExpectedValue, at)),
            None => Ok(State::Value),
        }
    }

    #[inline(always)]
    fn open<S: Sink>(&mut self, object: bool, c: &mut Cursor<'_>, sink: &mut S) -> Step<S::Error> {
        let at = c.off(c.i);
        if self.stack.len() >= self.limits.max_depth {
            return Err(self.fail(ErrorKind::TooDeep, at));
        }
        self.stack.push(object);
        c.i += 1;
        if object {
            emit!(sink.begin_object(at));
            Ok(State::ObjectFirst)
        } else {
            emit!(sink.begin_array(at));
            Ok(State::ArrayFirst)
        }
    }

    /// `}` or `]` at `c.i`, the one that matches the open container.
    #[inline(always)]
    fn close<S: Sink>(&mut self, object: bool, c: &mut Cursor<'_>, sink: &mut S) -> Step<S::Error> {
        self.stack.pop();
        c.i += 1;
        let end = c.off(c.i);
        if object {
            emit!(sink.end_object(end));
        } else {
            emit!(sink.end_array(end));
        }
        Ok(self.after_value())
    }

    /// `text[s..e]`. The ends are always at ASCII delimiters or piece ends,
    /// so the check cannot fail; if it did, the input is refused.
    #[inline(always)]
    fn slice<'a, E>(&mut self, c: &Cursor<'a>, s: usize, e: usize) -> Result<&'a str, Halt<E>> {
        match c.text.get(..e).and_then(|t| t.get(s..)) {
            Some(t) => Ok(t),
            None => Err(self.fail(ErrorKind::InvalidUtf8, c.off(s))),
        }
    }

    /// A key's opening `"` at `c.i`. A key with no escape that ends in this
    /// piece goes to the sink straight from the input.
    #[inline(always)]
    fn key_start<S: Sink>(&mut self, c: &mut Cursor<'_>, sink: &mut S) -> Step<S::Error> {
        let at = c.off(c.i);
        let s = c.i + 1;
        let j = scan::string_end(c.b, s);
        if c.at(j) != Some(b'"') {
            self.key_at = at;
            self.key.clear();
            c.i = s;
            return self.key_body(c, sink);
        }
        if j - s > self.limits.max_key_len {
            return Err(self.fail(ErrorKind::KeyTooLong, at));
        }
        let key = self.slice(c, s, j)?;
        emit!(sink.key(key, at));
        c.i = j + 1;
        self.colon(c, sink)
    }

    /// Inside a key that is gathered in `self.key`.
    #[inline(never)]
    fn key_body<S: Sink>(&mut self, c: &mut Cursor<'_>, sink: &mut S) -> Step<S::Error> {
        loop {
            if self.esc_len > 0 {
                match self.escape_more(c)? {
                    Some(ch) => self.push_key(ch.encode_utf8(&mut [0; 4]))?,
                    None => return Ok(State::KeyBody),
                }
            }
            let s = c.i;
            let j = scan::string_end(c.b, s);
            let run = self.slice(c, s, j)?;
            self.push_key(run)?;
            c.i = j;
            match c.at(j) {
                None => return Ok(State::KeyBody),
                Some(b'"') => {
                    emit!(sink.key(&self.key, self.key_at));
                    c.i = j + 1;
                    return self.colon(c, sink);
                }
                Some(b'\\') => {
                    if let Some(ch) = self.escape_start(c)? {
                        self.push_key(ch.encode_utf8(&mut [0; 4]))?;
                    }
                }
                Some(_) => return Err(self.fail(ErrorKind::ControlCharacter, c.off(j))),
            }
        }
    }

    fn push_key<E>(&mut self, s: &str) -> Result<(), Halt<E>> {
        if self.key.len() + s.len() > self.limits.max_key_len {
            return Err(self.fail(ErrorKind::KeyTooLong, self.key_at));
        }
        self.key.push_str(s);
        Ok(())
    }

    /// After a key: `:` and, when it follows at once, the value.
    #[inline(always)]
    fn colon<S: Sink>(&mut self, c: &mut Cursor<'_>, sink: &mut S) -> Step<S::Error> {
        match c.token() {
            None => Ok(State::Colon),
            Some(b':') => {
                c.i += 1;
                match c.token() {
                    Some(_) => self.value(c, sink),
                    None => Ok(State::Value),
                }
            }
            Some(_) => Err(self.fail(ErrorKind::ExpectedColon, c.off(c.i))),
        }
    }

    /// Inside a string value, after its opening `"`.
    #[inline(always)]
    fn string_body<S: Sink>(&mut self, c: &mut Cursor<'_>, sink: &mut S) -> Step<S::Error> {
        loop {
            let s = c.i;
            let j = scan::string_end(c.b, s);
            if j > s {
                let run = self.slice(c, s, j)?;
                emit!(sink.string_fragment(run, c.off(s)));
            }
            c.i = j;
            match c.at(j) {
                None => return Ok(State::StringBody),
                Some(b'"') => {
                    c.i = j + 1;
                    emit!(sink.end_string(c.off(c.i)));
                    return Ok(State::Scalar);
                }
                Some(b'\\') => {
                    if let Some(ch) = self.escape_start(c)? {
                        emit!(sink.string_fragment(ch.encode_utf8(&mut [0; 4]), c.off(j)));
                    } else {
                        return Ok(State::StringBody);
                    }
                }
                Some(_) => return Err(self.fail(ErrorKind::ControlCharacter, c.off(j))),
            }
        }
    }

    /// An escape's `\` at `c.i`: its character, or `None` when the piece
    /// ends inside it (its bytes are then kept in `esc`).
    #[inline]
    fn escape_start<E>(&mut self, c: &mut Cursor<'_>) -> Result<Option<char>, Halt<E>> {
        let rest = &c.b[c.i..];
        match scan::unescape(rest) {
            Escape::Char(ch, n) => {
                c.i += n;
                Ok(Some(ch))
            }
            Escape::Incomplete => {
                // An unfinished escape is shorter than the longest one.
                let Some(keep) = self.esc.get_mut(..rest.len()) else {
                    return Err(self.fail(ErrorKind::InvalidEscape, c.off(c.i)));
                };
                keep.copy_from_slice(rest);
                self.esc_len = rest.len();
                self.esc_at = c.off(c.i);
                c.i = c.b.len();
                Ok(None)
            }
            Escape::Bad(kind, k) => Err(self.fail(kind, c.off(c.i + k))),
        }
    }

    /// Goes on with a kept escape, a byte at a time (it is at most 12).
    #[inline(never)]
    fn escape_more<E>(&mut self, c: &mut Cursor<'_>) -> Result<Option<char>, Halt<E>> {
        while let Some(x) = c.at(c.i) {
            let Some(slot) = self.esc.get_mut(self.esc_len) else {
                return Err(self.fail(ErrorKind::InvalidEscape, self.esc_at));
            };
            *slot = x;
            self.esc_len += 1;
            c.i += 1;
            match scan::unescape(&self.esc[..self.esc_len]) {
                Escape::Incomplete => {}
                Escape::Char(ch, _) => {
                    self.esc_len = 0;
                    return Ok(Some(ch));
                }
                Escape::Bad(kind, k) => return Err(self.fail(kind, self.esc_at + k as u64)),
            }
        }
        Ok(None)
    }

    /// A number starts at `c.i`. When it ends in this piece it is checked
    /// and handed over from the input; else its text so far is kept.
    #[inline]
    fn number<S: Sink>(&mut self, c: &mut Cursor<'_>, sink: &mut S) -> Step<S::Error> {
        let s = c.i;
        let j = scan::number_end(c.b, s);
        let at = c.off(s);
        if j - s > self.limits.max_number_len {
            return Err(self.fail(ErrorKind::NumberTooLong, at));
        }
        let text = self.slice(c, s, j)?;
        c.i = j;
        if j < c.b.len() {
            if let Err(k) = scan::check_number(text.as_bytes()) {
                return Err(self.fail(ErrorKind::InvalidNumber, at + k as u64));
            }
            emit!(sink.number(text, at));
            return Ok(State::Scalar);
        }
        self.num.clear();
        self.num.push_str(text);
        self.num_at = at;
        Ok(State::Number)
    }

    /// More of a number kept in `num`.
    #[inline(never)]
    fn number_more<S: Sink>(&mut self, c: &mut Cursor<'_>, sink: &mut S) -> Step<S::Error> {
        let s = c.i;
        let j = scan::number_end(c.b, s);
        if self.num.len() + (j - s) > self.limits.max_number_len {
            return Err(self.fail(ErrorKind::NumberTooLong, self.num_at));
        }
        let more = self.slice(c, s, j)?;
        self.num.push_str(more);
        c.i = j;
        if j == c.b.len() {
            return Ok(State::Number);
        }
        self.end_number(sink)
    }

    fn end_number<S: Sink>(&mut self, sink: &mut S) -> Step<S::Error> {
        if let Err(k) = scan::check_number(self.num.as_bytes()) {
            return Err(self.fail(ErrorKind::InvalidNumber, self.num_at + k as u64));
        }
        emit!(sink.number(&self.num, self.num_at));
        Ok(State::Scalar)
    }

    /// A literal of which `matched` bytes were seen, going on at `c.i`:
    /// the slow path, for a literal split between pieces or misspelt.
    #[inline(never)]
    fn literal<S: Sink>(
        &mut self,
        lit: Literal,
        matched: u8,
        c: &mut Cursor<'_>,
        sink: &mut S,
    ) -> Step<S::Error> {
        if matched == 0 {
            self.lit_at = c.off(c.i);
        }
        let want = &lit.text().as_bytes()[usize::from(matched)..];
        let have = &c.b[c.i..];
        let n = want.len().min(have.len());
        if let Some(k) = (0..n).find(|&k| have[k] != want[k]) {
            return Err(self.fail(ErrorKind::InvalidLiteral, c.off(c.i + k)));
        }
        c.i += n;
        if n < want.len() {
            // `n` < 5: the literal is at most five bytes.
            return Ok(State::Literal {
                lit,
                matched: matched + n as u8,
            });
        }
        emit!(sink.literal(lit, self.lit_at));
        Ok(State::Scalar)
    }
}
