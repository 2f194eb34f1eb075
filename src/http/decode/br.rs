//! Brotli (RFC 7932) through the decoder's state API, which takes input
//! and output slices and never reads on its own.

use brotli::enc::StandardAlloc;
use brotli::{BrotliDecompressStream, BrotliResult, BrotliState};

use super::{bad, Halt, Sink, Stream, PIECE};

type State = BrotliState<StandardAlloc, StandardAlloc, StandardAlloc>;

pub(super) struct Br {
    state: Box<State>,
    piece: Box<[u8]>,
    ended: bool,
}

impl Br {
    pub(super) fn new() -> Br {
        Br {
            // Strict: the large-window extension (windows up to 1 GiB) is
            // not RFC 7932 `br`; refusing it keeps the window at 16 MiB.
            state: Box::new(State::new_strict(
                StandardAlloc::default(),
                StandardAlloc::default(),
                StandardAlloc::default(),
            )),
            piece: vec![0; PIECE].into_boxed_slice(),
            ended: false,
        }
    }
}

impl Stream for Br {
    fn push(&mut self, input: &[u8], sink: &mut Sink<'_>) -> Result<(), Halt> {
        if self.ended {
            return if input.is_empty() {
                Ok(())
            } else {
                Err(bad("bytes after the brotli stream"))
            };
        }
        let mut available_in = input.len();
        let mut input_offset = 0;
        loop {
            let room = sink.room().min(self.piece.len());
            let dst = self.piece.get_mut(..room).unwrap_or_default();
            let mut available_out = room;
            let mut output_offset = 0;
            let mut total_out = 0;
            let before = input_offset;
            let result = BrotliDecompressStream(
                &mut available_in,
                &mut input_offset,
                input,
                &mut available_out,
                &mut output_offset,
                dst,
                &mut total_out,
                &mut self.state,
            );
            sink.took(input_offset - before);
            sink.emit(dst.get(..output_offset).unwrap_or_default())?;
            match result {
                BrotliResult::NeedsMoreOutput => {}
                BrotliResult::NeedsMoreInput if available_in == 0 => return Ok(()),
                BrotliResult::NeedsMoreInput => return Err(bad("brotli decoder stalled")),
                BrotliResult::ResultSuccess => {
                    self.ended = true;
                    return if available_in == 0 {
                        Ok(())
                    } else {
                        Err(bad("bytes after the brotli stream"))
                    };
                }
                BrotliResult::ResultFailure => {
                    return Err(bad(format!("corrupt stream: {:?}", self.state.error_code)))
                }
            }
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
