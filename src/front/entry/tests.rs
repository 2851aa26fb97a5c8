use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::*;
use crate::config::Listener;

/// A PROXY listener trusting loopback, and a client connected to it: (client, server side, peer).
async fn pair() -> (TcpStream, TcpStream, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (server, peer) = l.accept().await.unwrap();
    (client, server, peer)
}

fn entry(versions: Versions, trusted: &str) -> Entry {
    let mut l = Listener::plain("127.0.0.1:0".parse().unwrap());
    l.proxy_protocol = Some(versions);
    l.trusted = vec![trusted.parse().unwrap()];
    Entry::new(&l).unwrap()
}

#[tokio::test]
async fn a_header_that_stops_halfway_times_out_at_the_deadline() {
    let (mut client, server, peer) = pair().await;
    client.write_all(b"PROXY TCP4 192.0.2.1").await.unwrap();
    let deadline = Instant::now() + Duration::from_millis(200);
    let got = entry(Versions::Any, "127.0.0.1/32")
        .open(server, peer, deadline)
        .await;
    let err = got.err().expect("refused");
    assert!(matches!(err, EntryError::Timeout), "{err}");
    assert_eq!(err.reason(), "timeout");
    assert!(err.is_proxy_protocol());
    assert!(Instant::now() >= deadline);
}

#[tokio::test]
async fn bytes_after_the_header_are_replayed_and_the_source_is_the_client() {
    let (mut client, server, peer) = pair().await;
    client
        .write_all(b"PROXY TCP6 2001:db8::7 ::1 4242 443\r\nCONNECT a:1 HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut stream, who) = entry(Versions::V1, "127.0.0.0/8")
        .open(server, peer, deadline)
        .await
        .expect("accepted");
    assert_eq!(who, "[2001:db8::7]:4242".parse().unwrap());
    let mut rest = vec![0u8; 24];
    tokio::io::AsyncReadExt::read_exact(&mut stream, &mut rest)
        .await
        .unwrap();
    assert_eq!(rest, b"CONNECT a:1 HTTP/1.1\r\n\r\n"[..24]);
}

#[tokio::test]
async fn an_untrusted_peer_is_refused_before_any_byte_is_read() {
    let (_client, server, peer) = pair().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let got = entry(Versions::V2, "10.0.0.0/8")
        .open(server, peer, deadline)
        .await;
    assert!(matches!(got.err(), Some(EntryError::Untrusted(ip)) if ip == peer.ip()));
}
