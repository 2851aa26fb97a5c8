//! DNS resolution (with a per-name override) and TCP connect racing the resolved addresses
//! (Happy Eyeballs, RFC 8305). Must not apply policy nor chain upstream proxies: callers decide
//! which addresses may be dialled and build proxy chaining on top of [`connect`].

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep, sleep_until};

use crate::error::{ErrorKind, ProxyError};
use crate::target::{Host, Target};

/// RFC 8305 section 5: the recommended "Connection Attempt Delay" before racing the next address.
pub const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// What getaddrinfo says (lower-cased) when a name has no address: EAI_NONAME and EAI_NODATA on
/// glibc, musl and macOS. std hides the EAI code and keeps only this text.
const NO_SUCH_HOST_TEXTS: [&str; 4] = [
    "name or service not known",
    "no address associated with hostname",
    "name does not resolve",
    "nodename nor servname provided",
];

/// The prefix std puts before every getaddrinfo message; the user needs only the resolver's part.
const STD_LOOKUP_PREFIX: &str = "failed to lookup address information: ";

/// Resolves a target: an IP literal as is; else `hosts_override` if given; else the system
/// resolver, bounded by `dns_timeout`. Never returns an empty list.
pub async fn resolve(
    target: &Target,
    hosts_override: Option<IpAddr>,
    dns_timeout: Duration,
) -> Result<Vec<SocketAddr>, ProxyError> {
    let port = target.port;
    let name = match &target.host {
        Host::Ip(ip) => return Ok(vec![SocketAddr::new(*ip, port)]),
        Host::Name(name) => name.as_str(),
    };
    if let Some(ip) = hosts_override {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    // RFC 6761 section 6.4: `.invalid` never resolves, so no query needs to leave the machine.
    if name == "invalid" || name.ends_with(".invalid") {
        return Err(no_such_host(name));
    }
    match tokio::time::timeout(dns_timeout, tokio::net::lookup_host((name, port))).await {
        Err(_elapsed) => Err(ProxyError::upstream(
            ErrorKind::DnsTimeout,
            format!(
                "resolve {name}: timed out after {}",
                humantime::format_duration(dns_timeout)
            ),
        )),
        Ok(Err(err)) => Err(dns_error(name, err)),
        Ok(Ok(addrs)) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if addrs.is_empty() {
                return Err(no_such_host(name));
            }
            Ok(addrs)
        }
    }
}

fn no_such_host(name: &str) -> ProxyError {
    ProxyError::upstream(ErrorKind::DnsError, format!("resolve {name}: no such host"))
}

/// Classifies a resolver failure by its text, the only thing std keeps of the EAI code.
fn dns_error(name: &str, err: io::Error) -> ProxyError {
    let text = err.to_string();
    let lower = text.to_lowercase();
    let detail = if NO_SUCH_HOST_TEXTS.iter().any(|t| lower.contains(t)) {
        format!("resolve {name}: no such host")
    } else {
        let resolver_says = text.strip_prefix(STD_LOOKUP_PREFIX).unwrap_or(&text);
        format!("resolve {name}: {}", resolver_says.to_lowercase())
    };
    ProxyError::upstream(ErrorKind::DnsError, detail).with_source(err)
}

/// Connects to the first address that answers, racing them Happy-Eyeballs style: families
/// interleaved in the resolver's order, the next attempt started after [`ATTEMPT_DELAY`] or as
/// soon as one fails, the first success wins and the others are dropped. `connect_timeout`
/// bounds the whole race. The stream has TCP_NODELAY set.
///
/// The attempts are polled in this task, not spawned: a connection's dial costs no task, and
/// the first attempt starts at once rather than on the timer's next tick (up to a millisecond
/// late, which every tunnel would pay).
///
/// When every address fails, the most informative failure is reported (see [`informativeness`]).
pub async fn connect(
    addrs: &[SocketAddr],
    connect_timeout: Duration,
) -> Result<(TcpStream, SocketAddr), ProxyError> {
    let deadline = Instant::now() + connect_timeout;
    let mut queue = interleave_families(addrs).into_iter();
    // In start order: the first is the oldest still in flight.
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut failures: Vec<ProxyError> = Vec::new();
    let give_up = sleep_until(deadline);
    tokio::pin!(give_up);
    let mut next_start = Instant::now();
    loop {
        if attempts.is_empty() {
            // Nothing in flight (the start, or every attempt failed): the next one goes now.
            let Some(addr) = queue.next() else { break };
            attempts.push(Attempt::start(addr));
            next_start = Instant::now() + ATTEMPT_DELAY;
        }
        // The stagger timer exists only while addresses remain: one address, one timer.
        let stagger = (queue.len() > 0).then_some(next_start);
        match next_event(&mut attempts, give_up.as_mut(), stagger).await {
            Event::Done(addr, Ok(stream)) => return Ok((stream, addr)),
            Event::Done(addr, Err(err)) => {
                failures.push(ProxyError::from_connect_io(&addr.to_string(), err));
                if let Some(addr) = queue.next() {
                    attempts.push(Attempt::start(addr));
                    next_start = Instant::now() + ATTEMPT_DELAY;
                }
            }
            Event::Stagger => {
                if let Some(addr) = queue.next() {
                    attempts.push(Attempt::start(addr));
                }
                next_start = Instant::now() + ATTEMPT_DELAY;
            }
            Event::Deadline => {
                let oldest = attempts.first().map(|a| a.addr);
                if let Some(addr) = oldest.or_else(|| queue.next()) {
                    failures.push(timed_out(addr, connect_timeout));
                }
                break;
            }
        }
    }
    // Dropping `attempts` abandons the connects still in flight (their sockets close).
    Err(failures
        .into_iter()
        .min_by_key(|e| informativeness(e.kind))
        .unwrap_or_else(|| {
            ProxyError::upstream(ErrorKind::DnsError, "connect: no addresses to try")
        }))
}

type Connecting = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

/// One connect in flight, to `addr`.
struct Attempt {
    addr: SocketAddr,
    fut: Connecting,
}

impl Attempt {
    fn start(addr: SocketAddr) -> Attempt {
        let fut = Box::pin(async move {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok(stream)
        });
        Attempt { addr, fut }
    }
}

enum Event {
    Done(SocketAddr, io::Result<TcpStream>),
    Stagger,
    Deadline,
}

/// Waits for an attempt to finish (the oldest first), the deadline, or `stagger`: the time to
/// start the next attempt, when one remains.
async fn next_event(
    attempts: &mut Vec<Attempt>,
    mut give_up: Pin<&mut Sleep>,
    stagger: Option<Instant>,
) -> Event {
    let mut stagger = stagger.map(|at| Box::pin(sleep_until(at)));
    std::future::poll_fn(|cx| {
        for i in 0..attempts.len() {
            if let Poll::Ready(result) = attempts[i].fut.as_mut().poll(cx) {
                let done = attempts.remove(i);
                return Poll::Ready(Event::Done(done.addr, result));
            }
        }
        if give_up.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Event::Deadline);
        }
        if let Some(stagger) = &mut stagger
            && stagger.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Event::Stagger);
        }
        Poll::Pending
    })
    .await
}

fn timed_out(addr: SocketAddr, after: Duration) -> ProxyError {
    let text = format!("timed out after {}", humantime::format_duration(after));
    ProxyError::from_connect_io(
        &addr.to_string(),
        io::Error::new(io::ErrorKind::TimedOut, text),
    )
}

/// Ranks failures, lower first, to pick the one to report when every address failed.
/// A refusal is the destination host itself answering (it is up, nothing listens): definite and
/// actionable. Unreachable is a routing verdict, often about one family only (no IPv6 route) while
/// the other got further. A timeout is the absence of any answer, so it says least.
fn informativeness(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::ConnectionRefused => 0,
        ErrorKind::Unreachable => 1,
        ErrorKind::ConnectionTimeout => 2,
        _ => 3,
    }
}

/// RFC 8305 section 4: alternate address families, starting with the resolver's first choice
/// (getaddrinfo already orders by RFC 6724), keeping the order within each family.
fn interleave_families(addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let Some(first) = addrs.first() else {
        return Vec::new();
    };
    let (same, other): (Vec<SocketAddr>, Vec<SocketAddr>) =
        addrs.iter().partition(|a| a.is_ipv4() == first.is_ipv4());
    let mut out = Vec::with_capacity(addrs.len());
    for i in 0..same.len().max(other.len()) {
        out.extend(same.get(i));
        out.extend(other.get(i));
    }
    out
}

/// A loopback listener that answers no new connection: it never accepts, and its accept queue
/// is full, so Linux drops further SYNs (the client retransmits and `connect` hangs until its
/// timeout). Returns the listener and the streams filling its queue: keep all of them alive.
///
/// How: listen with backlog 0, which Linux still lets hold one completed connection; then
/// connect until a probe does not complete within [`FILL_PROBE`]. Probing, rather than assuming
/// the kernel's backlog arithmetic, keeps it right across kernels.
#[cfg(test)]
pub(crate) async fn unanswering_listener(
    ip: IpAddr,
) -> io::Result<(tokio::net::TcpListener, Vec<TcpStream>)> {
    /// How long a probe may take before the queue counts as full: loopback connects that the
    /// kernel answers complete in microseconds.
    const FILL_PROBE: Duration = Duration::from_millis(100);
    /// Bounds the fill loop; Linux needs 1 or 2 connections for backlog 0.
    const MAX_FILL: usize = 16;
    let socket = match ip {
        IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(ip, 0))?;
    let listener = socket.listen(0)?;
    let addr = listener.local_addr()?;
    let mut held = Vec::new();
    for _ in 0..MAX_FILL {
        match tokio::time::timeout(FILL_PROBE, TcpStream::connect(addr)).await {
            Ok(stream) => held.push(stream?),
            Err(_elapsed) => return Ok((listener, held)),
        }
    }
    Err(io::Error::other("accept queue never filled"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use tokio::net::TcpListener;

    const LOCAL4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const LOCAL6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);
    const LONG: Duration = Duration::from_secs(5);

    fn target(s: &str) -> Target {
        Target::parse_authority(s).unwrap()
    }

    /// A port that was just bound and released: nothing listens there, so connects are refused.
    async fn closed_port() -> SocketAddr {
        let listener = TcpListener::bind((LOCAL4, 0)).await.unwrap();
        listener.local_addr().unwrap()
    }

    #[tokio::test]
    async fn ip_literals_resolve_to_themselves() {
        let got = resolve(&target("127.0.0.1:443"), None, LONG).await.unwrap();
        assert_eq!(got, vec!["127.0.0.1:443".parse().unwrap()]);
        let got = resolve(&target("[::1]:8443"), Some(LOCAL4), LONG)
            .await
            .unwrap();
        assert_eq!(
            got,
            vec!["[::1]:8443".parse().unwrap()],
            "literals ignore overrides"
        );
    }

    #[tokio::test]
    async fn override_wins_over_the_resolver() {
        let got = resolve(&target("origin.invalid:443"), Some(LOCAL6), LONG)
            .await
            .unwrap();
        assert_eq!(got, vec!["[::1]:443".parse().unwrap()]);
    }

    #[tokio::test]
    async fn invalid_names_are_no_such_host() {
        let err = resolve(&target("nonexistent.invalid:443"), None, LONG)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::DnsError);
        assert_eq!(err.side, crate::error::Side::Upstream);
        assert_eq!(err.detail, "resolve nonexistent.invalid: no such host");
    }

    #[tokio::test]
    async fn localhost_resolves_through_the_system_resolver() {
        let got = resolve(&target("localhost:80"), None, LONG).await.unwrap();
        assert!(
            got.iter().all(|a| a.ip().is_loopback() && a.port() == 80),
            "{got:?}"
        );
    }

    #[test]
    fn resolver_texts_are_classified() {
        let gai = |t: &str| io::Error::other(format!("{STD_LOOKUP_PREFIX}{t}"));
        let err = dns_error("a.test", gai("Name or service not known"));
        assert_eq!(err.detail, "resolve a.test: no such host");
        let err = dns_error("a.test", gai("No address associated with hostname"));
        assert_eq!(err.detail, "resolve a.test: no such host");
        let err = dns_error("a.test", gai("Temporary failure in name resolution"));
        assert_eq!(err.kind, ErrorKind::DnsError);
        assert_eq!(
            err.detail,
            "resolve a.test: temporary failure in name resolution"
        );
    }

    #[test]
    fn families_interleave_in_resolver_order() {
        let a: Vec<SocketAddr> = ["[::1]:1", "[::2]:1", "[::3]:1", "10.0.0.1:1", "10.0.0.2:1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let got = interleave_families(&a);
        let want: Vec<SocketAddr> = ["[::1]:1", "10.0.0.1:1", "[::2]:1", "10.0.0.2:1", "[::3]:1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(got, want);
        assert!(interleave_families(&[]).is_empty());
    }

    #[tokio::test]
    async fn refused_names_the_address() {
        let addr = closed_port().await;
        let err = connect(&[addr], LONG).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::ConnectionRefused);
        assert_eq!(err.detail, format!("connect {addr}: connection refused"));
    }

    #[tokio::test]
    async fn full_backlog_times_out() {
        let (_listener, _held) = unanswering_listener(LOCAL4).await.unwrap();
        let addr = _listener.local_addr().unwrap();
        let start = Instant::now();
        let err = connect(&[addr], Duration::from_millis(300))
            .await
            .unwrap_err();
        let waited = start.elapsed();
        assert_eq!(err.kind, ErrorKind::ConnectionTimeout);
        assert_eq!(err.detail, format!("connect {addr}: timed out after 300ms"));
        assert!(
            waited >= Duration::from_millis(300) && waited < LONG,
            "{waited:?}"
        );
    }

    #[tokio::test]
    async fn ipv6_loopback_connects_with_nodelay() {
        let listener = TcpListener::bind((LOCAL6, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stream, got) = connect(&[addr], LONG).await.unwrap();
        assert_eq!(got, addr);
        assert!(stream.nodelay().unwrap());
    }

    #[tokio::test]
    async fn a_failure_starts_the_next_attempt_at_once() {
        let listener = TcpListener::bind((LOCAL4, 0)).await.unwrap();
        let good = listener.local_addr().unwrap();
        let start = Instant::now();
        let (_, got) = connect(&[closed_port().await, good], LONG).await.unwrap();
        assert_eq!(got, good);
        assert!(start.elapsed() < ATTEMPT_DELAY, "{:?}", start.elapsed());
    }

    #[tokio::test]
    async fn a_silent_address_is_raced_after_the_attempt_delay() {
        let (silent, _held) = unanswering_listener(LOCAL4).await.unwrap();
        let listener = TcpListener::bind((LOCAL6, 0)).await.unwrap();
        let good = listener.local_addr().unwrap();
        let start = Instant::now();
        let addrs = [silent.local_addr().unwrap(), good];
        let (_, got) = connect(&addrs, LONG).await.unwrap();
        assert_eq!(got, good);
        let waited = start.elapsed();
        assert!(waited >= ATTEMPT_DELAY && waited < LONG, "{waited:?}");
    }

    #[tokio::test]
    async fn refused_beats_timeout_when_all_fail() {
        let (silent, _held) = unanswering_listener(LOCAL4).await.unwrap();
        let refused = closed_port().await;
        let addrs = [silent.local_addr().unwrap(), refused];
        let err = connect(&addrs, Duration::from_millis(400))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::ConnectionRefused);
        assert_eq!(err.detail, format!("connect {refused}: connection refused"));
    }

    #[tokio::test]
    async fn no_addresses_is_an_error_not_a_hang() {
        let err = connect(&[], LONG).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::DnsError);
    }
}
