//! The request facts a rule can name: `methods` (HTTP method tokens, case-sensitive as HTTP
//! says) and `paths` (exact, or a prefix written `"/api/*"`). A path is matched in one
//! normal form, so that `/ap%69/../api/x` cannot slip past a rule for `/api/*`: unreserved
//! characters percent-decoded, other escapes in upper case, dot segments removed. Pure.

use std::fmt;

/// The longest `paths` entry accepted: a pattern is a policy's word, not a payload.
const MAX_PATTERN: usize = 2048;

/// One `paths` entry of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    /// `/login`: only that path.
    Exact(String),
    /// `/api/*`: `/api` itself and every path below it (`/api/`, `/api/v1/x`), not `/apix`.
    /// `/*` is every path.
    Under(String),
}

impl PathPattern {
    /// Parses a pattern as written in policy.yaml; the path part is normalised like every
    /// request path.
    pub fn parse(raw: &str) -> Result<PathPattern, String> {
        if !raw.starts_with('/') {
            return Err(format!("{raw:?}: a path starts with \"/\""));
        }
        if raw.len() > MAX_PATTERN {
            return Err(format!("a path over {MAX_PATTERN} bytes"));
        }
        if raw.contains(['?', '#']) {
            return Err(format!(
                "{raw:?}: paths match the path alone, without a query or fragment"
            ));
        }
        if raw.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(format!(
                "{raw:?}: spaces and control characters are not part of a path"
            ));
        }
        let (base, under) = match raw.strip_suffix("/*") {
            Some(base) => (base, true),
            None => (raw, false),
        };
        if base.contains('*') {
            return Err(format!(
                "{raw:?}: '*' is only allowed as a trailing \"/*\" (a prefix)"
            ));
        }
        let norm = normalize_path(if base.is_empty() { "/" } else { base });
        Ok(if under {
            // `/api/*` keeps no trailing slash, so that `/api` itself is under it too.
            PathPattern::Under(norm.trim_end_matches('/').to_owned())
        } else {
            PathPattern::Exact(norm)
        })
    }

    /// Whether `path` (already normalised by [`normalize_path`]) matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Exact(p) => path == p,
            PathPattern::Under(base) => path
                .strip_prefix(base.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
        }
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathPattern::Exact(p) => f.write_str(p),
            PathPattern::Under(base) => write!(f, "{base}/*"),
        }
    }
}

/// Checks a `methods` entry: an HTTP token. Methods are case-sensitive, so a lower-case
/// spelling of a standard one would never match what clients send: refused, with the fix.
pub fn parse_method(raw: &str) -> Result<String, String> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if raw.is_empty() || raw.len() > 32 || !raw.bytes().all(token) {
        return Err(format!(
            "{raw:?} is not an HTTP method (a token like GET or PROPFIND)"
        ));
    }
    let upper = raw.to_ascii_uppercase();
    if upper != raw {
        return Err(format!(
            "{raw:?}: methods are case-sensitive and clients send {upper:?}"
        ));
    }
    Ok(upper)
}

/// The form a path is matched in: unreserved characters (RFC 3986 section 2.3) that were
/// percent-encoded are decoded, other escapes get upper-case hex, and `.`/`..` segments are
/// removed (section 5.2.4), so every spelling of one resource has one form. An encoded `/`
/// stays encoded: it is not a segment boundary to the origin either.
pub fn normalize_path(path: &str) -> String {
    let decoded = decode_unreserved(path);
    let mut out: Vec<&str> = Vec::new();
    let mut segments = decoded.split('/').peekable();
    // The leading empty segment of an absolute path.
    if decoded.starts_with('/') {
        segments.next();
    }
    let mut ends_in_dir = false;
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        match seg {
            "." => ends_in_dir = last,
            ".." => {
                out.pop();
                ends_in_dir = last;
            }
            s => {
                out.push(s);
                ends_in_dir = false;
            }
        }
    }
    let mut norm = String::with_capacity(decoded.len() + 1);
    for seg in &out {
        norm.push('/');
        norm.push_str(seg);
    }
    if ends_in_dir || norm.is_empty() {
        norm.push('/');
    }
    norm
}

fn decode_unreserved(path: &str) -> String {
    let b = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(hi), Some(lo)) = (hex(b.get(i + 1)), hex(b.get(i + 2)))
        {
            let byte = hi << 4 | lo;
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                out.push(char::from(byte));
            } else {
                out.push('%');
                out.push(char::from(b[i + 1].to_ascii_uppercase()));
                out.push(char::from(b[i + 2].to_ascii_uppercase()));
            }
            i += 3;
            continue;
        }
        // Paths from a request URI are ASCII; anything else is kept as it came.
        let ch = path[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

fn hex(b: Option<&u8>) -> Option<u8> {
    char::from(*b?)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn paths_normalise_to_one_form() {
        for (raw, norm) in [
            ("/", "/"),
            ("", "/"),
            ("/api/x", "/api/x"),
            ("/ap%69/x", "/api/x"),
            ("/api/./x", "/api/x"),
            ("/a/../api/x", "/api/x"),
            ("/../../api", "/api"),
            ("/api/x/..", "/api/"),
            ("/api/.", "/api/"),
            ("/a%2fb", "/a%2Fb"),
            ("/%7euser", "/~user"),
            ("/bad%zz", "/bad%zz"),
            ("/trail%4", "/trail%4"),
            ("//double", "//double"),
        ] {
            assert_eq!(normalize_path(raw), norm, "{raw:?}");
        }
    }

    #[test]
    fn patterns_match_exactly_or_below() {
        let under = PathPattern::parse("/api/*").unwrap();
        for p in ["/api", "/api/", "/api/v1/users"] {
            assert!(under.matches(p), "{p}");
        }
        for p in ["/apix", "/", "/other/api"] {
            assert!(!under.matches(p), "{p}");
        }
        let all = PathPattern::parse("/*").unwrap();
        assert!(all.matches("/") && all.matches("/anything/at/all"));
        let exact = PathPattern::parse("/login").unwrap();
        assert!(exact.matches("/login") && !exact.matches("/login/") && !exact.matches("/"));
        assert_eq!(
            PathPattern::parse("/ap%69/*").unwrap(),
            under,
            "patterns normalise too"
        );
        assert_eq!(under.to_string(), "/api/*");
    }

    #[test]
    fn bad_patterns_and_methods_say_why() {
        for bad in ["api", "/a*b", "/api*", "/x?y=1", "/a b", "*"] {
            assert!(PathPattern::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_method("PROPFIND").unwrap(), "PROPFIND");
        let err = parse_method("get").unwrap_err();
        assert!(err.contains("\"GET\""), "{err}");
        for bad in ["", "G T", "GET\r\n", &"X".repeat(33)] {
            assert!(parse_method(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        /// Normalising is idempotent and never leaves a dot segment for a prefix check to miss.
        #[test]
        fn normal_form_is_stable(path in "(/(\\.|\\.\\.|%2[eE]|%6[19]|[a-z]{1,3}|%2[fF])){0,8}/?") {
            let once = normalize_path(&path);
            prop_assert_eq!(normalize_path(&once), once.clone());
            prop_assert!(once.starts_with('/'));
            prop_assert!(!once.split('/').any(|s| s == "." || s == ".."), "{}", once);
        }
    }
}
