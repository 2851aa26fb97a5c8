//! `flows:` settings: the flows file, the live ring's size, and which bodies are captured (how
//! much, of which media types). Pure: values and the matcher, no I/O.

use std::path::PathBuf;

/// The live ring's default length (`flows.keep`).
pub const DEFAULT_KEEP: usize = 1000;
/// `flows.keep` at most: a record is a few KiB without bodies, so 100k stay under a few
/// hundred MiB; more is a misconfiguration, not a wish.
pub const MAX_KEEP: usize = 100_000;
/// `flows.bodies.max` at most, per direction and request: a capture is held in memory while
/// the exchange runs, so 64 MiB per body is already a lot for a proxy.
pub const MAX_BODY_CAPTURE: usize = 64 * 1024 * 1024;
/// `flows.bodies.max` when `bodies` is given without it.
pub const DEFAULT_BODY_CAPTURE: usize = 1024 * 1024;
/// `flows.bodies.types` when `bodies` is given without it: the readable bodies.
pub const DEFAULT_BODY_TYPES: [&str; 2] = ["text/*", "application/json"];

/// `flows:` as validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flows {
    /// The JSON-lines file of flow records, if any.
    pub file: Option<PathBuf>,
    /// How many recent records the admin's live view keeps.
    pub keep: usize,
    /// Body capture, off when `None` (the default).
    pub bodies: Option<BodyCapture>,
}

impl Default for Flows {
    fn default() -> Self {
        Flows {
            file: None,
            keep: DEFAULT_KEEP,
            bodies: None,
        }
    }
}

/// `flows.bodies`: capture at most `max` bytes of a body whose media type matches `types`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyCapture {
    /// Bytes kept per body (per direction, per request).
    pub max: usize,
    /// The media ranges captured.
    pub types: Vec<MediaRange>,
}

impl BodyCapture {
    /// Whether a body with this `Content-Type` value is captured. A body without one is not:
    /// nothing says it is readable.
    pub fn wants(&self, content_type: Option<&[u8]>) -> bool {
        let Some(value) = content_type.and_then(|v| std::str::from_utf8(v).ok()) else {
            return false;
        };
        let essence = value.split(';').next().unwrap_or("").trim();
        let Some((ty, sub)) = essence.split_once('/') else {
            return false;
        };
        self.types.iter().any(|r| r.matches(ty, sub))
    }
}

/// `type/subtype` or `type/*`, lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRange {
    /// The top-level type (`text`).
    pub ty: String,
    /// The subtype, `None` for `*`.
    pub sub: Option<String>,
}

impl MediaRange {
    fn matches(&self, ty: &str, sub: &str) -> bool {
        self.ty.eq_ignore_ascii_case(ty)
            && self
                .sub
                .as_deref()
                .is_none_or(|s| s.eq_ignore_ascii_case(sub))
    }
}

/// RFC 9110's `token` characters, which a type and a subtype are made of.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `text/*`, `application/json`; not `*/*`, `text`, `text/`, parameters or spaces.
pub(super) fn parse_media_range(s: &str) -> Result<MediaRange, String> {
    let bad = || format!("{s:?} is not a media type like type/subtype or type/*");
    let (ty, sub) = s.split_once('/').ok_or_else(bad)?;
    if !is_token(ty) || ty == "*" || ty.contains('*') {
        return Err(bad());
    }
    let sub = match sub {
        "*" => None,
        s if is_token(s) && !s.contains('*') => Some(s.to_ascii_lowercase()),
        _ => return Err(bad()),
    };
    Ok(MediaRange {
        ty: ty.to_ascii_lowercase(),
        sub,
    })
}

/// A byte size: `512`, `64KiB`, `1MiB`, `1GiB` (binary), `10kB`/`KB`, `1MB`, `1GB` (decimal).
pub(super) fn parse_size(s: &str) -> Result<usize, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let unit_bytes: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(format!("{s:?} is not a size like 512, 64KiB or 1MiB")),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 512, 64KiB or 1MiB"))?;
    n.checked_mul(unit_bytes)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("2 MB"), Ok(2_000_000));
        assert!(parse_size("1.5MiB").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("1PiB").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
    }

    #[test]
    fn media_ranges_and_matching() {
        let c = BodyCapture {
            max: 10,
            types: ["text/*", "application/json"]
                .iter()
                .map(|s| parse_media_range(s).unwrap())
                .collect(),
        };
        assert!(c.wants(Some(b"text/plain; charset=utf-8")));
        assert!(c.wants(Some(b"Application/JSON")));
        assert!(!c.wants(Some(b"application/octet-stream")));
        assert!(!c.wants(Some(b"application/json+x")));
        assert!(!c.wants(Some(b"text")));
        assert!(!c.wants(None));
        for bad in [
            "*/*",
            "text",
            "text/",
            "/json",
            "te xt/plain",
            "text/pl*",
            "a/b;c=d",
            "",
        ] {
            assert!(parse_media_range(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_media_range("Image/*").unwrap(),
            MediaRange {
                ty: "image".into(),
                sub: None
            }
        );
    }
}
