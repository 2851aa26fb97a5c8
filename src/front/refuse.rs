//! Answers a connection that is refused before its front-end handshake (a connection limit),
//! in the protocol the client speaks, promptly, instead of leaving it in the backlog or
//! closing it without a word: 503 for HTTP, reply 0x01 for SOCKS5. Reads only what the answer
//! needs and holds nothing: the connection is over whatever the client does.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::socks5;
use crate::error::{ProxyError, socks5_reply};
use crate::reply;

/// A refused client gets this long to say which protocol it speaks before we close.
pub const GRACE: Duration = Duration::from_secs(2);

/// Answers `err` on `stream` and closes it, within [`GRACE`]. The first read tells the
/// protocol: a SOCKS5 greeting gets "no auth", and the request that follows the failure reply
/// its framing needs; anything else gets the HTTP error response.
pub async fn refuse<S>(mut stream: S, err: &ProxyError)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let answer = async {
        let mut buf = [0u8; 512];
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        if buf[0] == socks5::VERSION {
            stream
                .write_all(&socks5::encode_method_choice(socks5::method::NO_AUTH))
                .await?;
            let _ = stream.read(&mut buf).await?;
            stream
                .write_all(&socks5::encode_reply(socks5_reply::GENERAL_FAILURE, None))
                .await?;
        } else {
            stream
                .write_all(&reply::encode_error_response(err, true))
                .await?;
        }
        stream.shutdown().await
    };
    let _: Result<std::io::Result<()>, _> = tokio::time::timeout(GRACE, answer).await;
}
