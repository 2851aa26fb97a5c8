//! Just enough WebSocket (RFC 6455) for the tests, written by hand so that no crate is needed:
//! the accept key (with a small SHA-1), one frame's encoding and parsing, the origin's echo
//! loop, and a blocking client read. Frames are bounded; nothing here is a general library.

use std::io::Read;

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// RFC 6455, 1.3: appended to the client's key before hashing.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Test frames are small; a larger one is a bug (or an attack) and ends the connection.
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Opcode of a text frame.
pub const OP_TEXT: u8 = 0x1;
/// Opcode of a close frame.
pub const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;
const FIN: u8 = 0x80;
const MASKED: u8 = 0x80;
/// Frames the echo loop answers before it gives up on a chatty peer.
const MAX_ECHOED_FRAMES: usize = 1000;

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let digest = sha1(format!("{key}{ACCEPT_GUID}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(digest)
}

/// One whole frame.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    /// Its opcode (`OP_TEXT`, `OP_CLOSE`, ...).
    pub opcode: u8,
    /// Its payload, unmasked.
    pub payload: Vec<u8>,
}

/// One whole frame, FIN set; masked with `mask` (clients must mask, servers must not).
pub fn encode(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![FIN | opcode];
    let mask_bit = if mask.is_some() { MASKED } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(mask_bit | n as u8),
        n @ 126..=0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// Parses one frame from the start of `buf`: Ok(None) while incomplete, Ok((frame, used))
/// when whole, Err for a frame over MAX_PAYLOAD. The payload comes back unmasked.
pub fn parse(buf: &[u8]) -> Result<Option<(Frame, usize)>, String> {
    let [b0, b1, rest @ ..] = buf else {
        return Ok(None);
    };
    let (len, rest) = match b1 & 0x7f {
        126 => match rest {
            [a, b, tail @ ..] => (usize::from(u16::from_be_bytes([*a, *b])), tail),
            _ => return Ok(None),
        },
        127 => match rest.split_first_chunk::<8>() {
            Some((n, tail)) => (
                usize::try_from(u64::from_be_bytes(*n)).unwrap_or(usize::MAX),
                tail,
            ),
            None => return Ok(None),
        },
        n => (usize::from(n), rest),
    };
    if len > MAX_PAYLOAD {
        return Err(format!("frame of {len} bytes"));
    }
    let (mask, rest) = if b1 & MASKED != 0 {
        match rest.split_first_chunk::<4>() {
            Some((m, tail)) => (Some(*m), tail),
            None => return Ok(None),
        }
    } else {
        (None, rest)
    };
    if rest.len() < len {
        return Ok(None);
    }
    let mut payload = rest[..len].to_vec();
    if let Some(key) = mask {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    let used = buf.len() - rest.len() + len;
    Ok(Some((
        Frame {
            opcode: b0 & 0x0f,
            payload,
        },
        used,
    )))
}

/// Reads one frame, blocking (the socket's timeouts bound the wait). `buf` holds bytes
/// already read (e.g. after a response head) and keeps any surplus.
pub fn read_frame(s: &mut impl Read, buf: &mut Vec<u8>) -> Frame {
    let mut chunk = [0u8; 4096];
    loop {
        match parse(buf) {
            Ok(Some((frame, used))) => {
                buf.drain(..used);
                return frame;
            }
            Ok(None) => {}
            Err(e) => panic!("bad WebSocket frame: {e}"),
        }
        let n = s.read(&mut chunk).expect("read a WebSocket frame");
        assert!(n > 0, "connection closed before a whole frame ({buf:?})");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The origin's side of `/ws`: echoes text and binary frames, answers pings, and returns
/// after echoing a close frame.
pub async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut io: S) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    for _ in 0..MAX_ECHOED_FRAMES {
        let frame = loop {
            match parse(&buf) {
                Ok(Some((frame, used))) => {
                    buf.drain(..used);
                    break frame;
                }
                Ok(None) => {}
                Err(e) => return Err(std::io::Error::other(e)),
            }
            let n = io.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let reply = if frame.opcode == OP_PING {
            OP_PONG
        } else {
            frame.opcode
        };
        io.write_all(&encode(reply, &frame.payload, None)).await?;
        if frame.opcode == OP_CLOSE {
            return io.shutdown().await;
        }
    }
    Ok(())
}

/// SHA-1 (FIPS 180-4), for the accept key only: it is what RFC 6455 prescribes.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            (e, d, c, b, a) = (d, c, b.rotate_left(30), a, t);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (o, x) in out.chunks_exact_mut(4).zip(h) {
        o.copy_from_slice(&x.to_be_bytes());
    }
    out
}
