//! `pac:` and the address the PAC advertises (never a wildcard bind). Pure.

use serde_saphyr::Location;

use super::super::Listener;
use super::super::pac::{MAX_PAC_BYPASS, Pac, parse_bypass, parse_pac_proxy};
use super::super::raw::RawPac;
use super::super::values::parse_bool;
use super::Checker;

/// `pac:` and the PAC's advertised address.
impl Checker<'_> {
    pub(super) fn pac(&mut self, raw: RawPac) -> Pac {
        self.unknown("pac", &raw.unknown, RawPac::KEYS);
        let d = Pac::default();
        if let Some(list) = raw.bypass.as_ref()
            && list.value.len() > MAX_PAC_BYPASS
        {
            let msg = format!("more than {MAX_PAC_BYPASS} entries");
            self.issue(list.referenced, "pac.bypass", msg);
            return d;
        }
        Pac {
            proxy: self.parsed(raw.proxy.as_ref(), "pac.proxy", parse_pac_proxy),
            bypass: self.list(raw.bypass.as_ref(), "pac.bypass", parse_bypass),
            socks: self
                .parsed(raw.socks.as_ref(), "pac.socks", parse_bool)
                .unwrap_or(d.socks),
        }
    }

    /// The PAC advertises the first listener unless `pac.proxy` says otherwise, and a
    /// wildcard bind address (0.0.0.0, ::) is no address a browser can connect to.
    pub(super) fn refuse_wildcard_pac(&mut self, listen: &[(Location, Listener)]) {
        let first = listen.first().map(|(at, l)| (at, l.addr));
        if let Some((at, addr)) = first.filter(|(_, a)| a.ip().is_unspecified()) {
            let msg = format!(
                "{addr} is a wildcard bind address, and the admin's /proxy.pac would advertise \
                 it to browsers; set `pac.proxy` to the address devices use (like \
                 ward.example:{})",
                addr.port()
            );
            self.issue(*at, "listen", msg);
        }
    }
}
