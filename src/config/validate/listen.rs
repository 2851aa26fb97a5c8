//! `listen`: plain `IP:PORT` strings and listener objects (`addr`, `tls`, `proxy_protocol`,
//! `trusted`), each problem placed; and the open-proxy check on their addresses. Pure: the
//! certificate files are read later, by the listener (`front::entry::cert`).

use serde_saphyr::Location;

use super::super::raw::{RawListen, RawListener, RawListenerTls, S};
use super::super::values::{parse_net, parse_proxy_versions, parse_socket_addr};
use super::super::{ConfigIssue, Listener, ListenerTls};
use super::{Checker, join};

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

impl Checker<'_> {
    /// Listeners with their places (for the open-proxy check); the default if absent.
    pub(super) fn listen(
        &mut self,
        field: Option<&S<Vec<S<RawListen>>>>,
    ) -> Vec<(Location, Listener)> {
        let Some(field) = field else {
            let default = DEFAULT_LISTEN
                .parse()
                .expect("DEFAULT_LISTEN is an address");
            return vec![(Location::UNKNOWN, Listener::plain(default))];
        };
        if field.value.is_empty() {
            self.issue(field.referenced, "listen", "no address to listen on");
        }
        let mut out = Vec::new();
        for (i, item) in field.value.iter().enumerate() {
            let listener = match &item.value {
                RawListen::Addr(addr) => {
                    let addr = S::new(addr.clone(), item.referenced, item.defined);
                    self.parsed(Some(&addr), "listen", parse_socket_addr)
                        .map(Listener::plain)
                }
                RawListen::Object(raw) => {
                    self.listener(raw, item.referenced, &format!("listen[{i}]"))
                }
            };
            if let Some(listener) = listener {
                out.push((item.referenced, listener));
            }
        }
        out
    }

    /// `{ addr, tls: { cert, key }, proxy_protocol, trusted }`.
    fn listener(&mut self, raw: &RawListener, at: Location, prefix: &str) -> Option<Listener> {
        self.unknown(prefix, &raw.unknown, RawListener::KEYS);
        let key = |k: &str| join(prefix, k);
        let addr = match &raw.addr {
            Some(addr) => self.parsed(Some(addr), &key("addr"), parse_socket_addr),
            None => {
                self.issue(at, &key("addr"), "missing");
                None
            }
        };
        let tls = raw
            .tls
            .as_ref()
            .and_then(|t| self.listener_tls(t, &key("tls")));
        let proxy_protocol = self.parsed(
            raw.proxy_protocol.as_ref(),
            &key("proxy_protocol"),
            parse_proxy_versions,
        );
        let trusted = self.list(raw.trusted.as_ref(), &key("trusted"), parse_net);
        match (&raw.proxy_protocol, &raw.trusted) {
            (Some(pp), None) => self.issue(
                pp.referenced,
                &key("proxy_protocol"),
                "needs `trusted`: the load balancers' addresses (CIDRs) whose PROXY header is \
                 believed; anyone else could claim any client address",
            ),
            (None, Some(t)) => self.issue(
                t.referenced,
                &key("trusted"),
                "means nothing without `proxy_protocol`",
            ),
            _ => {}
        }
        Some(Listener {
            addr: addr?,
            tls,
            proxy_protocol,
            trusted,
        })
    }

    fn listener_tls(&mut self, raw: &S<RawListenerTls>, key: &str) -> Option<ListenerTls> {
        self.unknown(key, &raw.value.unknown, RawListenerTls::KEYS);
        let file = |me: &mut Self, field: &Option<S<String>>, name: &str| {
            let k = join(key, name);
            match field {
                Some(f) => me.path(Some(f), &k),
                None => {
                    me.issue(raw.referenced, &k, "missing");
                    None
                }
            }
        };
        let cert = file(self, &raw.value.cert, "cert");
        let key_file = file(self, &raw.value.key, "key");
        let at = raw.referenced;
        let place = ConfigIssue {
            file: self.file.to_path_buf(),
            line: u32::try_from(at.line()).unwrap_or(u32::MAX),
            column: u32::try_from(at.column()).unwrap_or(u32::MAX),
            key: key.to_owned(),
            message: String::new(),
        };
        Some(ListenerTls {
            cert: cert?,
            key: key_file?,
            place,
        })
    }

    pub(super) fn refuse_open_proxy(&mut self, listen: &[(Location, Listener)]) {
        for (at, l) in listen
            .iter()
            .filter(|(_, l)| !l.addr.ip().to_canonical().is_loopback())
        {
            let addr = l.addr;
            let msg = format!(
                "listening on {addr}, which is not loopback, without `users` would make an open \
                 proxy; add `users` or set `open_proxy: true`"
            );
            self.issue(*at, "listen", msg);
        }
    }
}
