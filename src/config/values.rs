//! The scalar values of policy.yaml: durations, addresses, ranges, switches. Pure parsing;
//! each error message says what was expected, for a user reading `ward check`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use super::Versions;
use crate::policy::Action;
use crate::policy::Toggle;

pub(super) fn parse_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err(format!("{s:?}: a timeout of zero would fail everything")),
        Ok(d) => Ok(d),
        Err(e) => Err(format!(
            "{s:?} is not a duration like 500ms, 10s or 5m ({e})"
        )),
    }
}

/// A drain period; zero is allowed (close everything at once).
pub(super) fn parse_grace(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 500ms, 10s or 5m ({e})"))
}

pub(super) fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not IP:PORT (like 127.0.0.1:8080 or [::1]:8080)"))
}

pub(super) fn parse_proxy_versions(s: &str) -> Result<Versions, String> {
    match s {
        "v1" => Ok(Versions::V1),
        "v2" => Ok(Versions::V2),
        "any" => Ok(Versions::Any),
        _ => Err(format!("{s:?} is not v1, v2 or any")),
    }
}

pub(super) fn parse_ip(s: &str) -> Result<IpAddr, String> {
    let inner = s.strip_prefix('[').and_then(|r| r.strip_suffix(']'));
    inner
        .unwrap_or(s)
        .parse()
        .map_err(|_| format!("{s:?} is not an IP address"))
}

/// A CIDR range; a bare address means just that address. Host bits are cleared. The same
/// parser as a `dst_file` line, so a list and policy.yaml cannot disagree.
pub(super) fn parse_net(s: &str) -> Result<IpNet, String> {
    crate::policy::lists::parse_net(s)
}

pub(super) fn parse_positive<T: std::str::FromStr + PartialEq + Default>(
    s: &str,
) -> Result<T, String> {
    match s.parse::<T>() {
        Ok(n) if n != T::default() => Ok(n),
        _ => Err(format!("{s:?} is not a positive whole number")),
    }
}

pub(super) fn parse_toggle(s: &str) -> Result<Toggle, String> {
    match s {
        "allow" => Ok(Toggle::Allow),
        "deny" => Ok(Toggle::Deny),
        _ => Err(format!("{s:?}: expected allow or deny")),
    }
}

pub(super) fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("{s:?}: expected true or false")),
    }
}

pub(super) fn parse_action(s: &str) -> Result<Action, String> {
    Action::parse(s).ok_or_else(|| format!("{s:?}: expected allow, deny or inspect"))
}
