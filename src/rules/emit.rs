//! Writing an answer the guard rebuilds: on a second reading of the same
//! decoded body, every token is written again but for the members and
//! page items the first reading left out, with the commas mended. The
//! answer is made only of what was read and judged; strings are written
//! with JSON's minimal escapes, numbers and literals as they came.

use std::fmt::Write as _;

/// The writer of a rebuilt answer.
pub(super) struct Emitter {
    out: Vec<u8>,
    /// Per open container that is written: is it an array, has it a
    /// member yet.
    open: Vec<(bool, bool)>,
    /// How deep inside a left-out value the tokens are (0: not inside).
    skipping: usize,
    /// The next value is left out.
    drop_next: bool,
    /// The string being read is left out.
    skipping_string: bool,
    /// The page items to leave out, by index, ascending, and what stands
    /// in their place.
    removed: Vec<u32>,
    next_removed: usize,
    filler: Option<&'static str>,
}

impl Emitter {
    pub(super) fn new(removed: Vec<u32>, filler: Option<&'static str>) -> Emitter {
        Emitter {
            out: Vec::with_capacity(64 * 1024),
            open: Vec::new(),
            skipping: 0,
            drop_next: false,
            skipping_string: false,
            removed,
            next_removed: 0,
            filler,
        }
    }

    /// The bytes written so far, handed over.
    pub(super) fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// How many bytes wait to be handed over.
    pub(super) fn pending(&self) -> usize {
        self.out.len()
    }

    /// Item `index` of a list begins; on a page, the first reading may
    /// have left it out.
    pub(super) fn item(&mut self, page: bool, index: u32) {
        if !page || self.skipping > 0 {
            return;
        }
        if self.removed.get(self.next_removed) == Some(&index) {
            self.next_removed += 1;
            if let Some(filler) = self.filler {
                self.separate();
                self.out.extend_from_slice(filler.as_bytes());
            }
            self.drop_next = true;
        }
    }

    /// A key of the current object; `strip`: it and its value are left out.
    pub(super) fn key(&mut self, key: &str, strip: bool) {
        if self.skipping > 0 {
            return;
        }
        if strip {
            self.drop_next = true;
            return;
        }
        self.separate();
        self.string(key);
        self.out.push(b':');
    }

    /// A comma before a member or item that is not the first.
    fn separate(&mut self) {
        if let Some((_, has)) = self.open.last_mut() {
            if *has {
                self.out.push(b',');
            }
            *has = true;
        }
    }

    /// A value begins: left out, or separated from the one before it (in
    /// an array; an object's member was separated at its key).
    fn value(&mut self) -> bool {
        if self.skipping > 0 || self.drop_next {
            return false;
        }
        if self.open.last().is_some_and(|(array, _)| *array) {
            self.separate();
        }
        true
    }

    pub(super) fn begin(&mut self, bracket: u8) {
        if self.value() {
            self.out.push(bracket);
            self.open.push((bracket == b'[', false));
        } else {
            self.drop_next = false;
            self.skipping += 1;
        }
    }

    pub(super) fn end(&mut self, bracket: u8) {
        if self.skipping > 0 {
            self.skipping -= 1;
            return;
        }
        self.open.pop();
        self.out.push(bracket);
    }

    pub(super) fn begin_string(&mut self) {
        if self.value() {
            self.out.push(b'"');
            self.skipping_string = false;
        } else {
            self.drop_next = false;
            self.skipping_string = true;
        }
    }

    pub(super) fn fragment(&mut self, fragment: &str) {
        if !self.skipping_string {
            self.escaped(fragment);
        }
    }

    pub(super) fn end_string(&mut self) {
        if !self.skipping_string {
            self.out.push(b'"');
        }
        self.skipping_string = false;
    }

    /// A number or literal, as it came.
    pub(super) fn raw(&mut self, text: &str) {
        if self.value() {
            self.out.extend_from_slice(text.as_bytes());
        } else {
            self.drop_next = false;
        }
    }

    fn string(&mut self, s: &str) {
        self.out.push(b'"');
        self.escaped(s);
        self.out.push(b'"');
    }

    /// `s` with the escapes JSON requires: `"`, `\` and control characters.
    fn escaped(&mut self, s: &str) {
        let bytes = s.as_bytes();
        let mut from = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let esc: &[u8] = match b {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0..=0x1f => b"",
                _ => continue,
            };
            self.out.extend_from_slice(&bytes[from..i]);
            if esc.is_empty() {
                let mut u = String::new();
                let _ = write!(u, "\\u{b:04x}");
                self.out.extend_from_slice(u.as_bytes());
            } else {
                self.out.extend_from_slice(esc);
            }
            from = i + 1;
        }
        self.out.extend_from_slice(&bytes[from..]);
    }
}
