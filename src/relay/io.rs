//! The byte streams of the relay: either side's stream with the bytes read
//! ahead of the current message ([`Peer`]), and a stream whose first bytes
//! were already read ([`Prefixed`]).
//!
//! Telling TLS from plain HTTP means reading the first bytes of a
//! connection; those bytes belong to the TLS handshake, so they are given
//! back to the TLS acceptor before anything else is read from the socket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A byte stream the relay can use: TCP or TLS, client or upstream side.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One side's stream with the bytes read ahead of the current message.
pub(super) struct Peer<S> {
    pub(super) io: S,
    pub(super) buf: BytesMut,
}

/// `prefix` first, then `io`; writes go straight to `io`.
pub struct Prefixed<S> {
    prefix: BytesMut,
    io: S,
}

impl<S> Prefixed<S> {
    /// Reads will return `prefix` before reading `io`.
    pub fn new(prefix: BytesMut, io: S) -> Prefixed<S> {
        Prefixed { prefix, io }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(this.prefix.get(..n).unwrap_or_default());
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn prefix_then_stream_in_order_in_small_reads() {
        let (mut far, near) = tokio::io::duplex(64);
        far.write_all(b" world").await.unwrap();
        drop(far);
        let mut p = Prefixed::new(BytesMut::from(&b"hello"[..]), near);
        let mut small = [0u8; 2];
        let n = p.read(&mut small).await.unwrap();
        assert_eq!(&small[..n], b"he");
        let mut rest = Vec::new();
        p.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"llo world");
    }

    #[tokio::test]
    async fn writes_go_to_the_stream() {
        let (mut far, near) = tokio::io::duplex(64);
        let mut p = Prefixed::new(BytesMut::from(&b"x"[..]), near);
        p.write_all(b"answer").await.unwrap();
        p.shutdown().await.unwrap();
        let mut got = Vec::new();
        far.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"answer");
    }
}
