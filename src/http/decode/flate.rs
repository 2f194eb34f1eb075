//! gzip (RFC 1952) and zlib (RFC 1950) around deflate (RFC 1951), on
//! flate2's inflater. The gzip header and trailer are read here, so the
//! header's name, comment and extra field are skipped, never held.

use flate2::{Crc, Decompress, FlushDecompress, Status};

use super::{bad, Halt, Sink, Stream, PIECE};

/// zlib-wrapped deflate: the inflater checks the header and the Adler-32.
pub(super) struct Zlib {
    inflate: Inflate,
    ended: bool,
}

impl Zlib {
    pub(super) fn new() -> Zlib {
        Zlib {
            inflate: Inflate::new(true),
            ended: false,
        }
    }
}

impl Stream for Zlib {
    fn push(&mut self, input: &[u8], sink: &mut Sink<'_>) -> Result<(), Halt> {
        let rest = if self.ended {
            input
        } else {
            match self.inflate.run(input, sink, |_| {})? {
                None => return Ok(()),
                Some(rest) => {
                    self.ended = true;
                    rest
                }
            }
        };
        if rest.is_empty() {
            Ok(())
        } else {
            Err(bad("bytes after the zlib stream"))
        }
    }

    fn finish(&mut self, _: &mut Sink<'_>) -> Result<(), Halt> {
        if self.ended {
            Ok(())
        } else {
            Err(bad("truncated stream"))
        }
    }
}

/// One gzip member: header, deflate body, CRC-32 and length.
pub(super) struct Gzip {
    part: Part,
    inflate: Inflate,
    crc: Crc,
}

enum Part {
    Header(Box<GzHeader>),
    Body,
    Trailer(Fixed<8>),
    Ended,
}

impl Gzip {
    pub(super) fn new() -> Gzip {
        Gzip {
            part: Part::Header(Box::default()),
            inflate: Inflate::new(false),
            crc: Crc::new(),
        }
    }
}

impl Stream for Gzip {
    fn push(&mut self, mut input: &[u8], sink: &mut Sink<'_>) -> Result<(), Halt> {
        loop {
            match &mut self.part {
                Part::Header(header) => {
                    let before = input.len();
                    let complete = header.parse(&mut input)?;
                    sink.took(before - input.len());
                    if !complete {
                        return Ok(());
                    }
                    self.part = Part::Body;
                }
                Part::Body => {
                    let crc = &mut self.crc;
                    match self.inflate.run(input, sink, |piece| crc.update(piece))? {
                        None => return Ok(()),
                        Some(rest) => {
                            input = rest;
                            self.part = Part::Trailer(Fixed::default());
                        }
                    }
                }
                Part::Trailer(trailer) => {
                    let before = input.len();
                    let got = trailer.fill(&mut input);
                    sink.took(before - input.len());
                    let Some(t) = got else {
                        return Ok(());
                    };
                    let sum = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
                    let size = u32::from_le_bytes([t[4], t[5], t[6], t[7]]);
                    if sum != self.crc.sum() {
                        return Err(bad("gzip CRC-32 mismatch"));
                    }
                    if size != self.crc.amount() {
                        return Err(bad("gzip length mismatch"));
                    }
                    self.part = Part::Ended;
                }
                Part::Ended => {
                    return if input.is_empty() {
                        Ok(())
                    } else {
                        Err(bad("bytes after the gzip member"))
                    };
                }
            }
        }
    }

    fn finish(&mut self, _: &mut Sink<'_>) -> Result<(), Halt> {
        match self.part {
            Part::Ended => Ok(()),
            Part::Header(_) => Err(bad("truncated gzip header")),
            Part::Body => Err(bad("truncated stream")),
            Part::Trailer(_) => Err(bad("truncated gzip trailer")),
        }
    }
}

const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const FRESERVED: u8 = 0xe0;

/// Where the gzip header parser is (RFC 1952 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Field {
    #[default]
    Fixed,
    ExtraLength,
    Extra,
    Name,
    Comment,
    HeaderCrc,
    Done,
}

/// A gzip header read as it arrives: only the fixed part and the lengths
/// are kept.
#[derive(Default)]
struct GzHeader {
    at: Field,
    flags: u8,
    fixed: Fixed<10>,
    extra_length: Fixed<2>,
    extra_left: usize,
    header_crc: Fixed<2>,
    /// CRC-32 of the header bytes before the header CRC.
    crc: Crc,
}

impl GzHeader {
    /// Read header bytes from `input`; true once the header is complete.
    fn parse(&mut self, input: &mut &[u8]) -> Result<bool, Halt> {
        loop {
            let at = self.at;
            let seen = *input;
            self.at = match at {
                Field::Fixed => match self.fixed.fill(input) {
                    None => at,
                    Some(f) => {
                        if f[0] != 0x1f || f[1] != 0x8b || f[2] != 8 {
                            return Err(bad("not a gzip member (or not deflate)"));
                        }
                        if f[3] & FRESERVED != 0 {
                            return Err(bad("gzip reserved flag set"));
                        }
                        self.flags = f[3];
                        Field::ExtraLength
                    }
                },
                Field::ExtraLength if self.flags & FEXTRA == 0 => Field::Name,
                Field::ExtraLength => match self.extra_length.fill(input) {
                    None => at,
                    Some(n) => {
                        self.extra_left = usize::from(u16::from_le_bytes(n));
                        Field::Extra
                    }
                },
                Field::Extra => {
                    let skip = self.extra_left.min(input.len());
                    *input = input.get(skip..).unwrap_or_default();
                    self.extra_left -= skip;
                    if self.extra_left == 0 {
                        Field::Name
                    } else {
                        at
                    }
                }
                Field::Name => self.skip_text(input, FNAME, Field::Comment),
                Field::Comment => self.skip_text(input, FCOMMENT, Field::HeaderCrc),
                Field::HeaderCrc if self.flags & FHCRC == 0 => Field::Done,
                Field::HeaderCrc => match self.header_crc.fill(input) {
                    None => at,
                    Some(c) => {
                        // The low 16 bits of the CRC-32 of the header.
                        if u32::from(u16::from_le_bytes(c)) != self.crc.sum() & 0xffff {
                            return Err(bad("gzip header CRC mismatch"));
                        }
                        Field::Done
                    }
                },
                Field::Done => return Ok(true),
            };
            if at != Field::HeaderCrc {
                let used = seen.len() - input.len();
                self.crc.update(seen.get(..used).unwrap_or_default());
            }
            if self.at == at {
                // Nothing more to read in this input.
                return Ok(false);
            }
        }
    }

    /// Skip a NUL-terminated field if `flag` says it is there.
    fn skip_text(&mut self, input: &mut &[u8], flag: u8, next: Field) -> Field {
        if self.flags & flag == 0 {
            return next;
        }
        match input.iter().position(|&b| b == 0) {
            Some(nul) => {
                *input = input.get(nul + 1..).unwrap_or_default();
                next
            }
            None => {
                *input = &[];
                self.at
            }
        }
    }
}

/// A fixed number of bytes that may arrive split.
struct Fixed<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Default for Fixed<N> {
    fn default() -> Self {
        Fixed {
            bytes: [0; N],
            len: 0,
        }
    }
}

impl<const N: usize> Fixed<N> {
    /// Take what is missing from `input`: the bytes once all are there.
    fn fill(&mut self, input: &mut &[u8]) -> Option<[u8; N]> {
        let (head, rest) = input.split_at(input.len().min(N - self.len));
        let dst = self.bytes.get_mut(self.len..self.len + head.len())?;
        dst.copy_from_slice(head);
        self.len += head.len();
        *input = rest;
        (self.len == N).then_some(self.bytes)
    }
}

/// The raw inflater and the piece it inflates into.
struct Inflate {
    inner: Decompress,
    piece: Box<[u8]>,
}

impl Inflate {
    fn new(zlib: bool) -> Inflate {
        Inflate {
            inner: Decompress::new(zlib),
            piece: vec![0; PIECE].into_boxed_slice(),
        }
    }

    /// Inflate all of `input`, handing each piece to `seen` and then to
    /// the sink. `Some(rest)` once the stream ended, with the input after
    /// its end; `None` while it goes on.
    fn run<'i>(
        &mut self,
        mut input: &'i [u8],
        sink: &mut Sink<'_>,
        mut seen: impl FnMut(&[u8]),
    ) -> Result<Option<&'i [u8]>, Halt> {
        loop {
            let room = sink.room().min(self.piece.len());
            let dst = self.piece.get_mut(..room).unwrap_or_default();
            let (in_before, out_before) = (self.inner.total_in(), self.inner.total_out());
            let status = self
                .inner
                .decompress(input, dst, FlushDecompress::None)
                .map_err(|e| bad(format!("corrupt stream: {e}")))?;
            let used = usize::try_from(self.inner.total_in() - in_before).unwrap_or(usize::MAX);
            let made = usize::try_from(self.inner.total_out() - out_before).unwrap_or(usize::MAX);
            input = input.get(used..).unwrap_or_default();
            sink.took(used);
            let piece = dst.get(..made).unwrap_or_default();
            seen(piece);
            sink.emit(piece)?;
            match status {
                Status::StreamEnd => return Ok(Some(input)),
                // A full piece may leave output behind: call again.
                _ if made == room => {}
                _ if input.is_empty() => return Ok(None),
                _ if used == 0 && made == 0 => return Err(bad("inflater made no progress")),
                _ => {}
            }
        }
    }
}
