//! Fair shares (`max_connections_per_client`) through the real binary: a client address that
//! holds its share is refused at once in its own protocol (503 with Proxy-Status, SOCKS5 0x01),
//! while another address is served; a freed place is usable again.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::support::net::{SocksAddr, connect, http_connect, read_head, socks5_open};
use crate::support::ward::{field, message};
use crate::support::{Policy, Ward, curl, origins, wait_until};

const SHARE: usize = 3;

/// A CONNECT from `from` (a loopback address of this host): the stream and the reply status.
fn connect_from(from: &str, ward: &Ward, target: &str) -> (TcpStream, u16) {
    use std::io::Write;
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let bind: SocketAddr = format!("{from}:0").parse().expect("bind address");
    socket
        .bind(&bind.into())
        .expect("bind a second loopback address");
    socket
        .connect_timeout(&ward.addr.into(), Duration::from_secs(5))
        .expect("connect to ward");
    let mut s: TcpStream = socket.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").unwrap();
    let status = read_head(&mut s).map_or(0, |h| h.status);
    (s, status)
}

#[test]
fn one_client_over_its_share_is_refused_while_another_is_served() {
    let ward = Ward::start(
        &Policy::new()
            .set("max_connections_per_client", &SHARE.to_string())
            .set("admin", "\"127.0.0.1:0\""),
    );
    let target = format!("origin.test:{}", origins().tls.port());
    let held: Vec<TcpStream> = (0..SHARE)
        .map(|i| {
            let (s, head) = http_connect(ward.addr, &target, &[]);
            assert_eq!(head.status, 200, "tunnel {i} within the share");
            s
        })
        .collect();

    let (_, head) = http_connect(ward.addr, &target, &[]);
    assert_eq!(head.status, 503, "over the share: {head:?}");
    assert_eq!(
        head.proxy_error().as_deref(),
        Some("connection_limit_reached")
    );
    let details = head.proxy_details().unwrap_or_default();
    assert!(
        details.contains("max_connections_per_client") && details.contains("127.0.0.1"),
        "{details}"
    );
    let socks = socks5_open(
        ward.addr,
        &SocksAddr::Domain("origin.test", origins().tls.port()),
        None,
    );
    assert_eq!(
        socks.err(),
        Some(0x01),
        "SOCKS5 over the share: general failure"
    );
    // curl sees the refusal too, and says so.
    let c = curl(&[
        "-x",
        &ward.http_url(),
        "--cacert",
        origins().ca(),
        &origins().https("origin.test", "/"),
    ]);
    assert_eq!(c.connect_code, 503, "{:?}", c.out);

    // Another address is still served, by curl and by hand.
    let c = curl(&[
        "--interface",
        "127.0.0.2",
        "-x",
        &ward.http_url(),
        "--cacert",
        origins().ca(),
        &origins().https("origin.test", "/"),
    ]);
    assert_eq!((c.connect_code, c.http_code), (200, 200), "{:?}", c.out);
    let (_other, status) = connect_from("127.0.0.2", &ward, &target);
    assert_eq!(status, 200);

    let text = ward.stderr_text();
    assert!(
        text.contains("per-client connection limit reached"),
        "{text}"
    );

    // A place given back is taken again.
    drop(held);
    let _again = wait_until(
        Duration::from_secs(10),
        "a place in the share again",
        || {
            let mut s = connect(ward.addr);
            use std::io::Write;
            let _ = write!(s, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
            read_head(&mut s)
                .is_some_and(|h| h.status == 200)
                .then_some(s)
        },
    );
    let metrics = ward_metrics(&ward);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ward_over_client_limit_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );
}

fn ward_metrics(ward: &Ward) -> String {
    let admin = ward
        .wait_log(Duration::from_secs(5), |v| {
            message(v) == Some("admin listening")
        })
        .and_then(|v| field(&v, "addr"))
        .expect("admin address");
    let got = curl(&[&format!("http://{admin}/metrics")]);
    got.expect_ok(200);
    got.body
}

/// Regression: behind a load balancer, the `max_connections` refusal logged the balancer as
/// the client. It now reads the PROXY header first and names the client it carries.
#[test]
fn max_connections_refusal_names_the_client_from_the_proxy_header() {
    use std::io::Write;
    let listen = "[{addr: \"127.0.0.1:0\", proxy_protocol: v1, trusted: [127.0.0.0/8]}]";
    let ward = Ward::start(
        &Policy::new()
            .set("listen", listen)
            .set("max_connections", "1"),
    );
    let target = format!("origin.test:{}", origins().tls.port());
    let request = |header: &str| {
        let mut s = connect(ward.addr);
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "{header}CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"
        )
        .unwrap();
        let status = read_head(&mut s).map_or(0, |h| h.status);
        (s, status)
    };
    let (_held, status) = request("PROXY TCP4 198.51.100.1 127.0.0.1 40001 8080\r\n");
    assert_eq!(status, 200, "the one place");
    let (_, status) = request("PROXY TCP4 203.0.113.7 127.0.0.1 40002 8080\r\n");
    assert_eq!(status, 503, "over max_connections");
    let line = ward
        .wait_log(Duration::from_secs(5), |v| {
            message(v) == Some("connection limit reached")
        })
        .unwrap_or_else(|| panic!("no refusal logged: {}", ward.log()));
    assert_eq!(field(&line, "client").as_deref(), Some("203.0.113.7:40002"));
    let peer = field(&line, "peer").unwrap_or_default();
    assert!(
        peer.starts_with("127.0.0.1:"),
        "the balancer is the peer: {peer}"
    );
}
