//! The destinations the proxy is tested against, all in this process on 127.0.0.1 ports the OS
//! picks, all from the test kit: a TLS origin (h1 and h2 via ALPN, a WebSocket echo at /ws)
//! signed by the test CA, the same routes over plain HTTP, a TLS origin with a self-signed
//! certificate, a server that speaks first, an echo server that honours half-close; and
//! addresses that refuse or never answer.
//! Shared by every test (one runtime, one set of listeners); it must never reach off loopback.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use testkit::{ALPN_BOTH, Ca, Leaf, Origin, Service};

pub use testkit::origin::{BANNER, INDEX_BODY, PAGE_MARKER};

/// Every name the trusted origin answers for. `*.lab.test` covers the per-test host names
/// (blocked.lab.test, slow.lab.test, ...) that the policies map to loopback.
pub const ORIGIN_NAMES: &[&str] = &["origin.test", "*.lab.test", "localhost", "127.0.0.1"];
/// Runtime threads serving the origins: the machine has 2 cores and ward runs beside.
const ORIGIN_THREADS: usize = 2;

pub struct Origins {
    ca: Ca,
    /// PEM file of the test CA, for `curl --cacert` and friends.
    ca_pem_path: PathBuf,
    /// TLS, certificate for origin.test / *.lab.test / localhost / 127.0.0.1, ALPN h2 + http/1.1.
    pub tls: Origin,
    /// The same routes over plain HTTP.
    pub plain: Origin,
    /// TLS with a self-signed certificate.
    pub untrusted: Origin,
    /// Sends BANNER at once, then echoes.
    pub banner: Origin,
    /// Echoes; on the client's EOF writes `EOF after N bytes\n` and closes.
    pub echo: Origin,
}

impl Origins {
    /// The test CA's PEM path as text, for `--cacert`.
    pub fn ca(&self) -> &str {
        self.ca_pem_path.to_str().expect("utf-8 temp path")
    }

    /// A rustls client config that trusts only the test CA (the clients the tests write
    /// themselves: raw CONNECT + TLS, 1-byte-at-a-time hellos, SNI games).
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        Arc::new(testkit::pki::client_config(&[self.ca.der()], alpn))
    }

    /// Over an open tunnel to the trusted origin: TLS as `sni` trusting only the test CA, then
    /// `GET /` must answer the index page.
    pub fn assert_index_over(&self, tunnel: TcpStream, sni: &str) {
        let mut tls = super::net::tls_over(tunnel, sni, self.client_config(&[b"http/1.1"]));
        let (status, body) = super::net::http_get(&mut tls, sni, "/");
        assert_eq!(
            (status, super::net::lossy(&body).as_str()),
            (200, INDEX_BODY)
        );
    }

    /// A server config with a leaf for [`ORIGIN_NAMES`] from the test CA: for origins a test
    /// writes itself (ones that fail on purpose), which clients must trust like the others.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        Arc::new(self.ca.issue(ORIGIN_NAMES).server_config(alpn))
    }

    /// `https://HOST:PORT/PATH` on the trusted TLS origin.
    pub fn https(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.tls.port())
    }

    /// `http://HOST:PORT/PATH` on the plain origin.
    pub fn http(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.plain.port())
    }
}

/// The process-wide origins, started on first use.
pub fn origins() -> &'static Origins {
    static ORIGINS: OnceLock<Origins> = OnceLock::new();
    ORIGINS.get_or_init(start_origins)
}

/// The runtime that serves the origins (and anything else async the harness needs).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(ORIGIN_THREADS)
            .thread_name("test-origin")
            .enable_all()
            .build()
            .expect("origin runtime")
    })
}

fn start_origins() -> Origins {
    // Kept for the whole process: external clients read ca.pem from it.
    let dir = tempfile::Builder::new()
        .prefix("ward-it-pki-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("pki dir")
        .keep();
    let ca = Ca::new("ward integration-test CA");
    let ca_pem_path = dir.join("ca.pem");
    ca.write_pem(&ca_pem_path);
    let trusted = ca.issue(ORIGIN_NAMES).server_config(ALPN_BOTH);
    let untrusted = Leaf::self_signed(ORIGIN_NAMES).server_config(ALPN_BOTH);
    runtime().block_on(async {
        Origins {
            tls: Origin::start(Service::Http(Some(Arc::new(trusted)))).await,
            plain: Origin::start(Service::Http(None)).await,
            untrusted: Origin::start(Service::Http(Some(Arc::new(untrusted)))).await,
            banner: Origin::start(Service::Banner).await,
            echo: Origin::start(Service::Echo).await,
            ca,
            ca_pem_path,
        }
    })
}

/// A loopback port where nothing listens: connecting gets ECONNREFUSED.
pub fn refused_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    port
}

/// A listener whose accept queue is full and never drained: the kernel drops further SYNs,
/// so connecting to it times out instead of being refused. Dropping it frees the port.
pub struct Blackhole {
    pub addr: SocketAddr,
    _listener: socket2::Socket,
    _fillers: Vec<TcpStream>,
}

/// How many connections may sit in the queue of a listener made with backlog 0 before the
/// kernel drops SYNs; the loop below stops at the first that does not complete, so this only
/// bounds it.
const BLACKHOLE_MAX_FILL: usize = 16;
/// A connect to a full queue is judged "hanging" after this long.
const BLACKHOLE_PROBE: std::time::Duration = std::time::Duration::from_millis(300);

impl Blackhole {
    pub fn new() -> Blackhole {
        use socket2::{Domain, Protocol, SockAddr, Socket, Type};
        let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        sock.bind(&SockAddr::from(any)).expect("bind");
        sock.listen(0).expect("listen");
        let addr = sock
            .local_addr()
            .expect("local addr")
            .as_socket()
            .expect("inet");
        let mut fillers = Vec::new();
        for _ in 0..BLACKHOLE_MAX_FILL {
            match TcpStream::connect_timeout(&addr, BLACKHOLE_PROBE) {
                Ok(s) => fillers.push(s),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return Blackhole {
                        addr,
                        _listener: sock,
                        _fillers: fillers,
                    };
                }
                Err(e) => panic!("filling the blackhole's queue: {e}"),
            }
        }
        panic!("the blackhole's accept queue never filled after {BLACKHOLE_MAX_FILL} connections");
    }
}
