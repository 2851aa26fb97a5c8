//! The origin's services without hyper: a server that speaks first, an echo that reports the
//! client's EOF, a byte source, and a minimal HTTP/1.1 responder for load (plus the head reader
//! it and a load generator's client share). Every read has a deadline; every loop a bound.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

use crate::body::{CHUNK, write_fill};
use crate::routes::{MAX_BODY, body_len};

/// The first line the speak-first server sends, before it reads anything (like an SSH server).
pub const BANNER: &[u8] = b"SSH-2.0-ward_test_banner\r\n";
/// Idle tunnels are held open for minutes: a request may be that long in coming.
const REQUEST_WAIT: Duration = Duration::from_secs(10 * 60);
/// A request head larger than this is not one the tests or benches send.
const MAX_HEAD: usize = 8 * 1024;
const MAX_REQUESTS_PER_CONN: usize = 10_000;

pub(crate) async fn banner(mut stream: TcpStream) {
    if stream.write_all(BANNER).await.is_ok() {
        let (mut r, mut w) = stream.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
    }
}

pub(crate) async fn echo(mut stream: TcpStream) {
    let mut total = 0u64;
    let mut buf = vec![0u8; CHUNK];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                total += n as u64;
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
    let report = format!("EOF after {total} bytes\n");
    if stream.write_all(report.as_bytes()).await.is_ok() {
        let _ = stream.shutdown().await;
    }
}

pub(crate) async fn source(mut stream: TcpStream) {
    let mut line = [0u8; 16];
    if !matches!(timeout(REQUEST_WAIT, stream.read(&mut line)).await, Ok(Ok(n)) if n > 0) {
        return;
    }
    let _ = write_fill(&mut stream, MAX_BODY).await;
}

/// The load responder: `GET /bytes/N` answered with N bytes, 404 (and close) otherwise.
pub(crate) async fn serve_h1<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    produced: &AtomicU64,
) {
    let mut buf = Vec::with_capacity(1024);
    for _ in 0..MAX_REQUESTS_PER_CONN {
        let Some(head_len) = read_head(&mut stream, &mut buf).await else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..head_len]).to_ascii_lowercase();
        buf.drain(..head_len);
        let close = head.contains("\r\nconnection: close");
        let path = head.strip_prefix("get ").and_then(|h| h.split(' ').next());
        let Some(len) = path.and_then(body_len) else {
            let _ = stream
                .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                .await;
            return;
        };
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {len}\r\n\r\n"
        );
        produced.fetch_add(len, Ordering::Relaxed);
        if stream.write_all(reply.as_bytes()).await.is_err()
            || write_fill(&mut stream, len).await.is_err()
        {
            return;
        }
        if close {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

/// Reads until a blank line; returns the head's length (`buf` may hold more after it), or
/// None when the peer closed, stayed silent too long, or sent a head over 8 KiB.
pub async fn read_head<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> Option<usize> {
    let deadline = Instant::now() + REQUEST_WAIT;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(end + 4);
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        let mut chunk = [0u8; 2048];
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
}
