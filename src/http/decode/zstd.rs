//! Zstandard (RFC 8878) as a content coding (RFC 9659): exactly one frame,
//! read here unit by unit (frame header, each block, the checksum) and
//! handed to ruzstd's frame decoder one whole unit at a time, so its
//! buffer never holds more than its window and one block.

use std::io::{self, Write};

use ruzstd::decoding::FrameDecoder;

use super::{bad, Halt, Sink, Stream};

/// RFC 9659 §3: a zstd content coding MUST NOT need a window over 8 MiB;
/// refusing more also bounds our memory per body.
const MAX_WINDOW: u64 = 8 * 1024 * 1024;

/// RFC 8878 §3.1.1.2.3: no block is larger than 128 KiB.
const MAX_BLOCK: usize = 128 * 1024;

const MAGIC: u32 = 0xFD2F_B528;

pub(super) struct Zstd {
    frame: Box<FrameDecoder>,
    at: Unit,
    checksum: bool,
    /// A unit split across pushes, gathered (at most one block).
    partial: Vec<u8>,
}

/// The next unit of the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Header,
    Block,
    Checksum,
    Ended,
}

/// How long the unit starting with some bytes is.
enum Len {
    Known(usize),
    /// Unknown until this many bytes are there.
    AtLeast(usize),
}

impl Zstd {
    pub(super) fn new() -> Zstd {
        Zstd {
            frame: Box::new(FrameDecoder::new()),
            at: Unit::Header,
            checksum: false,
            partial: Vec::new(),
        }
    }

    fn unit_len(&self, head: &[u8]) -> Result<Len, Halt> {
        match self.at {
            Unit::Header => match head.first_chunk::<5>() {
                None => Ok(Len::AtLeast(5)),
                Some(first) => header_len(first).map(Len::Known),
            },
            Unit::Block => match head.first_chunk::<3>() {
                None => Ok(Len::AtLeast(3)),
                Some(first) => block_len(first).map(Len::Known),
            },
            Unit::Checksum => Ok(Len::Known(4)),
            Unit::Ended => Err(bad("bytes after the zstd frame")),
        }
    }

    /// Decode one whole unit.
    fn unit(&mut self, unit: &[u8], sink: &mut Sink<'_>) -> Result<(), Halt> {
        sink.took(unit.len());
        match self.at {
            Unit::Header => {
                check_header(unit)?;
                self.frame
                    .init(unit)
                    .map_err(|e| bad(format!("bad zstd frame header: {e}")))?;
                self.checksum = unit.get(4).is_some_and(|d| d & 0x04 != 0);
                self.at = Unit::Block;
            }
            Unit::Block => {
                self.decode(unit)?;
                self.drain(sink)?;
                if unit.first().is_some_and(|h| h & 1 != 0) {
                    self.at = if self.checksum {
                        Unit::Checksum
                    } else {
                        Unit::Ended
                    };
                }
            }
            Unit::Checksum => {
                self.decode(unit)?;
                self.drain(sink)?;
                let sent = self.frame.get_checksum_from_data();
                if sent.is_none() || self.frame.get_calculated_checksum() != sent {
                    return Err(bad("zstd content checksum mismatch"));
                }
                self.at = Unit::Ended;
            }
            Unit::Ended => return Err(bad("bytes after the zstd frame")),
        }
        Ok(())
    }

    fn decode(&mut self, unit: &[u8]) -> Result<(), Halt> {
        let (read, _) = self
            .frame
            .decode_from_to(unit, &mut [])
            .map_err(|e| bad(format!("corrupt stream: {e}")))?;
        if read != unit.len() {
            return Err(bad("zstd block not decoded whole"));
        }
        Ok(())
    }

    /// Hand on what the decoder need not keep for its window (everything
    /// once the frame is finished), straight from its buffer.
    fn drain(&mut self, sink: &mut Sink<'_>) -> Result<(), Halt> {
        let mut out = Out { sink, halt: None };
        let res = self.frame.collect_to_writer(&mut out);
        if let Some(halt) = out.halt {
            return Err(halt);
        }
        res.map(|_| ())
            .map_err(|e| bad(format!("corrupt stream: {e}")))
    }
}

impl Stream for Zstd {
    fn push(&mut self, mut input: &[u8], sink: &mut Sink<'_>) -> Result<(), Halt> {
        while !input.is_empty() {
            if self.partial.is_empty() {
                // A whole unit in the input: decode it where it lies.
                if let Len::Known(n) = self.unit_len(input)? {
                    if let Some((unit, rest)) = input.split_at_checked(n) {
                        self.unit(unit, sink)?;
                        input = rest;
                        continue;
                    }
                }
            }
            let want = match self.unit_len(&self.partial)? {
                Len::Known(n) | Len::AtLeast(n) => n,
            };
            let missing = want.saturating_sub(self.partial.len());
            let (head, rest) = input.split_at(input.len().min(missing));
            // Room for the whole unit at once, not a byte at a time.
            self.partial.reserve_exact(missing);
            self.partial.extend_from_slice(head);
            input = rest;
            if let Len::Known(n) = self.unit_len(&self.partial)? {
                if self.partial.len() == n {
                    let unit = std::mem::take(&mut self.partial);
                    let res = self.unit(&unit, sink);
                    self.partial = unit;
                    self.partial.clear();
                    res?;
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self, _: &mut Sink<'_>) -> Result<(), Halt> {
        match self.at {
            Unit::Ended => Ok(()),
            Unit::Header => Err(bad("truncated zstd frame header")),
            Unit::Block => Err(bad("truncated stream")),
            Unit::Checksum => Err(bad("truncated zstd checksum")),
        }
    }
}

/// The decoder's buffer drained into the sink, a piece at a time.
struct Out<'s, 'a> {
    sink: &'s mut Sink<'a>,
    halt: Option<Halt>,
}

impl Write for Out<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let piece = buf
            .get(..buf.len().min(self.sink.room()))
            .unwrap_or_default();
        match self.sink.emit(piece) {
            Ok(()) => Ok(piece.len()),
            Err(halt) => {
                self.halt = Some(halt);
                Err(io::Error::other("decoding halted"))
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The length of the frame header that starts with `first` (RFC 8878
/// §3.1.1.1). Refuses other magics (skippable frames too) and the
/// reserved bit.
fn header_len(first: &[u8; 5]) -> Result<usize, Halt> {
    let magic = u32::from_le_bytes([first[0], first[1], first[2], first[3]]);
    if magic != MAGIC {
        return Err(bad("not a zstd frame (or a skippable frame)"));
    }
    let descriptor = first[4];
    if descriptor & 0x08 != 0 {
        return Err(bad("zstd reserved bit set"));
    }
    let single_segment = descriptor & 0x20 != 0;
    let window_descriptor = usize::from(!single_segment);
    let dict_bytes = [0, 1, 2, 4][usize::from(descriptor & 0x03)];
    let fcs_bytes = match (descriptor >> 6, single_segment) {
        (0, false) => 0,
        (0, true) => 1,
        (1, _) => 2,
        (2, _) => 4,
        _ => 8,
    };
    Ok(5 + window_descriptor + dict_bytes + fcs_bytes)
}

/// Refuse a whole frame header that needs a dictionary or a window over
/// 8 MiB.
fn check_header(header: &[u8]) -> Result<(), Halt> {
    let (first, mut rest) = header
        .split_first_chunk::<5>()
        .ok_or_else(|| bad("truncated zstd frame header"))?;
    let descriptor = first[4];
    let single_segment = descriptor & 0x20 != 0;
    let mut window = None;
    if !single_segment {
        let (&wd, after) = rest
            .split_first()
            .ok_or_else(|| bad("truncated zstd frame header"))?;
        let exponent = u64::from(wd >> 3);
        let mantissa = u64::from(wd & 0x07);
        let base = 1u64 << (10 + exponent);
        window = Some(base + (base / 8) * mantissa);
        rest = after;
    }
    let dict_bytes = [0, 1, 2, 4][usize::from(descriptor & 0x03)];
    let (dict, fcs) = rest.split_at(dict_bytes.min(rest.len()));
    if dict.iter().any(|&b| b != 0) {
        return Err(bad("zstd frame needs a dictionary"));
    }
    if single_segment {
        let mut le = [0u8; 8];
        le.get_mut(..fcs.len())
            .ok_or_else(|| bad("zstd frame header"))?
            .copy_from_slice(fcs);
        let mut size = u64::from_le_bytes(le);
        if fcs.len() == 2 {
            size += 256;
        }
        window = Some(size);
    }
    match window {
        Some(w) if w <= MAX_WINDOW => Ok(()),
        _ => Err(bad("zstd window over 8 MiB")),
    }
}

/// The length of the block that starts with header `h` (RFC 8878
/// §3.1.1.2): its header and its content on the wire.
fn block_len(h: &[u8; 3]) -> Result<usize, Halt> {
    let header = u32::from_le_bytes([h[0], h[1], h[2], 0]);
    let size = usize::try_from(header >> 3).unwrap_or(usize::MAX);
    if size > MAX_BLOCK {
        return Err(bad("zstd block over 128 KiB"));
    }
    match (header >> 1) & 0x03 {
        // Raw and compressed blocks carry `size` bytes; RLE one byte.
        0 | 2 => Ok(3 + size),
        1 => Ok(3 + 1),
        _ => Err(bad("zstd reserved block type")),
    }
}
