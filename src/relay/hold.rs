//! The body store: a body's bytes are kept here until its verdict.
//!
//! Up to a threshold the bytes stay in memory; past it everything moves to
//! an unlinked temporary file, so memory stays flat whatever the body size.
//! The file disappears with the `Hold` (it never has a name on disk).

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::rules::Pass;
use crate::telemetry::metrics::metrics;

/// Bytes of held bodies on disk now.
#[derive(Debug)]
pub struct DiskUse(AtomicU64);

impl DiskUse {
    /// Nothing on disk.
    pub const fn new() -> DiskUse {
        DiskUse(AtomicU64::new(0))
    }
}

impl Default for DiskUse {
    fn default() -> DiskUse {
        DiskUse::new()
    }
}

/// The disk use of all connections together.
static SPILLED: DiskUse = DiskUse::new();

/// A held body.
#[derive(Debug)]
pub struct Hold {
    memory: BytesMut,
    file: Option<std::fs::File>,
    len: u64,
    threshold: usize,
    /// Bytes this hold has on disk (counted in `disk`).
    on_disk: u64,
    /// The most bytes all holds sharing `disk` may have on disk together.
    spill_cap: u64,
    disk: &'static DiskUse,
    /// Whether this hold opened a spill file (counted in the metrics until
    /// it is dropped, also after `forward` took the file).
    spilled: bool,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.disk.0.fetch_sub(self.on_disk, Ordering::Relaxed);
        let m = metrics();
        m.held(-i64::try_from(self.len).unwrap_or(i64::MAX));
        if self.spilled {
            m.spill_file(-1);
        }
    }
}

impl Hold {
    /// An empty store that keeps up to `threshold` bytes in memory; all
    /// holds together keep at most `spill_cap` bytes on disk.
    pub fn new(threshold: usize, spill_cap: u64) -> Hold {
        Hold::sharing(threshold, spill_cap, &SPILLED)
    }

    /// As [`Hold::new`], counting disk use in `disk`.
    pub fn sharing(threshold: usize, spill_cap: u64, disk: &'static DiskUse) -> Hold {
        Hold {
            memory: BytesMut::new(),
            file: None,
            len: 0,
            threshold,
            on_disk: 0,
            spill_cap,
            disk,
            spilled: false,
        }
    }

    /// Count `n` more bytes on disk, or refuse when the disk budget of all
    /// holds would be exceeded.
    fn reserve_disk(&mut self, n: u64) -> io::Result<()> {
        let before = self.disk.0.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > self.spill_cap {
            self.disk.0.fetch_sub(n, Ordering::Relaxed);
            return Err(io::Error::other(format!(
                "held bodies would take more than limits.max_spill_bytes ({}) on disk",
                self.spill_cap
            )));
        }
        self.on_disk += n;
        Ok(())
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
        metrics().held(i64::try_from(chunk.len()).unwrap_or(i64::MAX));
        if self.file.is_some() {
            self.reserve_disk(chunk.len() as u64)?;
            if let Some(file) = &mut self.file {
                return file.write_all(chunk);
            }
        }
        self.memory.extend_from_slice(chunk);
        if self.memory.len() > self.threshold {
            self.reserve_disk(self.memory.len() as u64)?;
            let mut file = tempfile::tempfile_in(spill_dir)?;
            self.spilled = true;
            metrics().spill_file(1);
            file.write_all(&self.memory)?;
            self.memory = BytesMut::new();
            self.file = Some(file);
        }
        Ok(())
    }

    /// Write the held bytes to `out`. Taking a [`Pass`] is the point: only
    /// the rule engine makes one, so a body cannot be forwarded unjudged.
    pub async fn forward<W: AsyncWrite + Unpin>(
        mut self,
        _pass: &Pass,
        out: &mut W,
    ) -> io::Result<()> {
        match self.file.take() {
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

    /// A reader of the held bytes from the start, for a second reading of
    /// the body (an answer rebuilt). The hold itself is not consumed.
    pub fn reader(&self) -> io::Result<Box<dyn Read + Send + '_>> {
        match &self.file {
            None => Ok(Box::new(&self.memory[..])),
            Some(file) => {
                let mut file = file.try_clone()?;
                file.seek(SeekFrom::Start(0))?;
                Ok(Box::new(file))
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
        let mut hold = Hold::new(1024, u64::MAX);
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
        let mut hold = Hold::new(1000, u64::MAX);
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

    #[test]
    fn disk_budget_is_shared_and_given_back() {
        let dir = tempfile::tempdir().unwrap();
        static DISK: DiskUse = DiskUse::new();
        let cap = 3000;
        let mut a = Hold::sharing(100, cap, &DISK);
        a.push(&[0u8; 2000], dir.path()).unwrap();
        let mut b = Hold::sharing(100, cap, &DISK);
        let err = b.push(&[0u8; 2000], dir.path()).unwrap_err();
        assert!(err.to_string().contains("max_spill_bytes"), "{err}");
        drop(a);
        let mut c = Hold::sharing(100, cap, &DISK);
        c.push(&[0u8; 2000], dir.path()).unwrap();
        drop(c);
        drop(b);
        assert_eq!(DISK.0.load(Ordering::Relaxed), 0);
    }
}
