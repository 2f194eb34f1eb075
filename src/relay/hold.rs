//! The body store: a body's bytes are kept here until its verdict.
//!
//! Up to a threshold the bytes stay in memory; past it everything moves to
//! an unlinked temporary file, so memory stays flat whatever the body size.
//! The file disappears with the `Hold` (it never has a name on disk).

use std::io::{self, Seek, SeekFrom, Write};
use std::path::Path;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::rules::Pass;

/// A held body.
#[derive(Debug)]
pub struct Hold {
    memory: BytesMut,
    file: Option<std::fs::File>,
    len: u64,
    threshold: usize,
}

impl Hold {
    /// An empty store that keeps up to `threshold` bytes in memory.
    pub fn new(threshold: usize) -> Hold {
        Hold {
            memory: BytesMut::new(),
            file: None,
            len: 0,
            threshold,
        }
    }

    /// Bytes held so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the body moved to disk.
    pub fn spilled(&self) -> bool {
        self.file.is_some()
    }

    /// Add bytes. Spills to a file in `spill_dir` once past the threshold.
    ///
    /// File writes are blocking, but they go to the page cache in large
    /// pieces; a spill happens only for bodies of megabytes, where the cost
    /// is amortised (measured in the relay benchmark).
    pub fn push(&mut self, chunk: &[u8], spill_dir: &Path) -> io::Result<()> {
        self.len += chunk.len() as u64;
        if let Some(file) = &mut self.file {
            return file.write_all(chunk);
        }
        self.memory.extend_from_slice(chunk);
        if self.memory.len() > self.threshold {
            let mut file = tempfile::tempfile_in(spill_dir)?;
            file.write_all(&self.memory)?;
            self.memory = BytesMut::new();
            self.file = Some(file);
        }
        Ok(())
    }

    /// Write the held bytes to `out`. Taking a [`Pass`] is the point: only
    /// the rule engine makes one, so a body cannot be forwarded unjudged.
    pub async fn forward<W: AsyncWrite + Unpin>(self, _pass: &Pass, out: &mut W) -> io::Result<()> {
        match self.file {
            None => out.write_all(&self.memory).await,
            Some(mut file) => {
                file.seek(SeekFrom::Start(0))?;
                let mut file = tokio::fs::File::from_std(file);
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let n = file.read(&mut buf).await?;
                    if n == 0 {
                        return Ok(());
                    }
                    out.write_all(&buf[..n]).await?;
                }
            }
        }
    }

    /// The bytes, when they are still in memory and small (used to write a
    /// head and a small body in one write).
    pub fn in_memory(&self) -> Option<Bytes> {
        match self.file {
            None => Some(Bytes::copy_from_slice(&self.memory)),
            Some(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn small_body_stays_in_memory_and_round_trips() {
        let mut hold = Hold::new(1024);
        hold.push(b"hello ", &std::env::temp_dir()).unwrap();
        hold.push(b"world", &std::env::temp_dir()).unwrap();
        assert!(!hold.spilled());
        let mut out = Vec::new();
        hold.forward(&Pass::uninspected(), &mut out).await.unwrap();
        assert_eq!(out, b"hello world");
    }

    #[tokio::test]
    async fn large_body_spills_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut hold = Hold::new(1000);
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        for piece in data.chunks(333) {
            hold.push(piece, dir.path()).unwrap();
        }
        assert!(hold.spilled());
        assert_eq!(hold.len(), data.len() as u64);
        let mut out = Vec::new();
        hold.forward(&Pass::uninspected(), &mut out).await.unwrap();
        assert_eq!(out, data);
        // The spill file is unlinked: nothing is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
