//! systemd readiness (sd_notify(3), `Type=notify`): `READY=1` once the listeners are bound,
//! `RELOADING=1` with `MONOTONIC_USEC=` when a reload starts and `READY=1` when it is done,
//! `STOPPING=1` when the drain starts. Written by hand rather than with a crate: the protocol
//! is one datagram of `KEY=value` lines to the unix socket named by `$NOTIFY_SOCKET` (a path,
//! or an abstract name written with a leading `@`). No variable, no socket: every call is a
//! no-op, so ward behaves the same outside systemd. A failed send is logged at debug and
//! otherwise ignored: readiness reporting must never stop the proxy.

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The variable systemd sets for a `Type=notify` service.
const ENV: &str = "NOTIFY_SOCKET";

/// Where the state datagrams go; a no-op when ward is not under a notifying supervisor.
pub(super) struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`; an unusable value is a warning and a no-op notifier.
    pub(super) fn from_env() -> Notifier {
        let Some(value) = std::env::var_os(ENV) else {
            return Notifier { target: None };
        };
        let target = socket_addr(value.as_encoded_bytes()).and_then(|addr| {
            let socket = UnixDatagram::unbound()?;
            // A supervisor that stopped reading must not block the reloader or the drain.
            socket.set_nonblocking(true)?;
            Ok((socket, addr))
        });
        match target {
            Ok(t) => Notifier { target: Some(t) },
            Err(e) => {
                tracing::warn!(error = %e, "NOTIFY_SOCKET is set but unusable: no readiness notifications");
                Notifier { target: None }
            }
        }
    }

    /// The listeners are bound: the service is up.
    pub(super) fn ready(&self) {
        self.send("READY=1");
    }

    /// A reload starts; [`Notifier::ready`] says it is over.
    pub(super) fn reloading(&self) {
        // systemd matches the reload to its request by this timestamp (CLOCK_MONOTONIC, µs).
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let usec = now.tv_sec.unsigned_abs() * 1_000_000 + now.tv_nsec.unsigned_abs() / 1_000;
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
    }

    /// The drain started.
    pub(super) fn stopping(&self) {
        self.send("STOPPING=1");
    }

    fn send(&self, state: &str) {
        let Some((socket, addr)) = &self.target else {
            return;
        };
        if let Err(e) = socket.send_to_addr(state.as_bytes(), addr) {
            tracing::debug!(error = %e, state, "sd_notify datagram not sent");
        }
    }
}

/// `$NOTIFY_SOCKET` as a socket address: `/path` or `@abstract-name`.
fn socket_addr(value: &[u8]) -> std::io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    match value {
        [] => Err(std::io::Error::other("empty")),
        [b'@', name @ ..] => SocketAddr::from_abstract_name(name),
        [b'/', ..] => {
            use std::os::unix::ffi::OsStrExt;
            SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(value))
        }
        _ => Err(std::io::Error::other(
            "neither an absolute path nor an @abstract name",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn received(server: &UnixDatagram) -> String {
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).expect("a datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sends_each_state_to_a_path_and_to_an_abstract_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let by_path = UnixDatagram::bind(&path).unwrap();
        let name = format!("ward-notify-test-{}", std::process::id());
        let abstract_addr = {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes()).unwrap()
        };
        let by_name = UnixDatagram::bind_addr(&abstract_addr).unwrap();
        for (server, value) in [
            (&by_path, path.to_str().unwrap().to_owned()),
            (&by_name, format!("@{name}")),
        ] {
            server
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let socket = UnixDatagram::unbound().unwrap();
            let n = Notifier {
                target: Some((socket, socket_addr(value.as_bytes()).unwrap())),
            };
            n.ready();
            assert_eq!(received(server), "READY=1");
            n.reloading();
            let msg = received(server);
            let usec = msg
                .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
                .expect(&msg);
            assert!(usec.parse::<u64>().is_ok_and(|u| u > 0), "{msg}");
            n.stopping();
            assert_eq!(received(server), "STOPPING=1");
        }
    }

    #[test]
    fn bad_values_are_refused_and_no_socket_is_a_no_op() {
        for bad in [&b""[..], b"relative.sock"] {
            assert!(socket_addr(bad).is_err(), "{bad:?}");
        }
        Notifier { target: None }.ready();
    }
}
