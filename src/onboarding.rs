//! The onboarding page and downloads: what a person needs to point a device at ward and trust
//! its CA. Served by the admin endpoint at `/` and, through the proxy, at the reserved
//! `setup_host` (default `http://ward.setup/`); `ward ca show` prints the same steps as text.
//! Pure: the caller reads the CA file and sends the bytes. Must never show a secret: the page
//! is built from the CA certificate (public), addresses and the fixed steps, nothing else.

pub mod pac;
pub mod platforms;
pub mod profile;

use std::fmt::Write as _;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};

use crate::target::Host;
use platforms::{Files, Platform, Step, platforms};

/// `Content-Type` of the PEM download.
pub const PEM_TYPE: &str = "application/x-pem-file";
/// `Content-Type` of the DER downloads (`.crt`, `.cer`): what Windows, Android and iOS open.
pub const DER_TYPE: &str = "application/x-x509-ca-cert";
const HTML_TYPE: &str = "text/html; charset=utf-8";
const TEXT_TYPE: &str = "text/plain; charset=utf-8";

/// The CA certificate as the page offers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaCert {
    pem: String,
    der: Vec<u8>,
}

impl CaCert {
    /// The first certificate in `pem`.
    pub fn from_pem(pem: &str) -> Result<CaCert, String> {
        let der = CertificateDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| format!("no certificate in the PEM text: {e}"))?;
        Ok(CaCert {
            pem: pem.to_owned(),
            der: der.as_ref().to_vec(),
        })
    }

    /// `AA:BB:…`, SHA-256 of the DER.
    pub fn fingerprint(&self) -> String {
        fingerprint_sha256(&self.der)
    }
}

/// `AA:BB:…`: SHA-256 of `der`, the form browsers and `openssl x509 -fingerprint` show.
pub fn fingerprint_sha256(der: &[u8]) -> String {
    let hex: Vec<String> = Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    hex.join(":")
}

/// What one rendering of the page knows.
#[derive(Debug, Clone)]
pub struct Site {
    /// The CA, when interception is on (`None`: there is nothing to install).
    pub ca: Option<CaCert>,
    /// `host:port` devices set as their proxy.
    pub proxy: String,
    /// The PAC URL, when the admin endpoint serves one at a known address.
    pub pac_url: Option<String>,
    /// `http://ward.setup/` (the configured `setup_host`).
    pub setup_url: String,
}

impl Site {
    /// `http://NAME/` for the reserved name.
    pub fn setup_url(setup_host: &Host) -> String {
        format!("http://{setup_host}/")
    }
}

/// The PAC URL as seen from the proxy side: the admin address, with a wildcard bind replaced by
/// the host devices use for the proxy; unknown while the admin port is chosen at start.
pub fn admin_pac_url(admin: Option<SocketAddr>, proxy_host: &str) -> Option<String> {
    let admin = admin.filter(|a| a.port() != 0)?;
    if admin.ip().is_unspecified() {
        return Some(format!("http://{proxy_host}:{}/proxy.pac", admin.port()));
    }
    Some(format!("http://{admin}/proxy.pac"))
}

/// One answer of the onboarding site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// The HTTP status.
    pub status: StatusCode,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The download's file name (`Content-Disposition: attachment`), for downloads.
    pub filename: Option<&'static str>,
    /// The bytes.
    pub body: Bytes,
}

impl Served {
    /// As an HTTP response; never cached (the CA may be replaced by `ward ca init --force`).
    pub fn into_response(self) -> Response<Bytes> {
        let mut resp = Response::new(self.body);
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        if let Some(name) = self.filename
            && let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
        {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
        resp
    }
}

/// The paths [`respond`] answers.
pub const PATHS: &[&str] = &[
    "/",
    "/ca.pem",
    "/ca.crt",
    "/ca.cer",
    "/ca.der",
    "/ca.mobileconfig",
];

/// The page or a download for `path`; `None` for a path that is not the onboarding site's.
pub fn respond(path: &str, site: &Site) -> Option<Served> {
    let ok = |content_type, filename, body: Vec<u8>| Served {
        status: StatusCode::OK,
        content_type,
        filename,
        body: Bytes::from(body),
    };
    if path == "/" || path == "/index.html" {
        return Some(ok(HTML_TYPE, None, page_html(site).into_bytes()));
    }
    if !PATHS.contains(&path) {
        return None;
    }
    let Some(ca) = &site.ca else {
        return Some(refusal(StatusCode::NOT_FOUND, NO_CA));
    };
    Some(match path {
        "/ca.pem" => ok(PEM_TYPE, Some("ward-ca.pem"), ca.pem.clone().into_bytes()),
        "/ca.crt" => ok(DER_TYPE, Some("ward-ca.crt"), ca.der.clone()),
        "/ca.cer" => ok(DER_TYPE, Some("ward-ca.cer"), ca.der.clone()),
        "/ca.der" => ok(DER_TYPE, Some("ward-ca.der"), ca.der.clone()),
        _ => ok(
            profile::CONTENT_TYPE,
            Some("ward.mobileconfig"),
            profile::mobileconfig(&ca.der).into_bytes(),
        ),
    })
}

/// A short plain-text answer (a refused method, an unknown path).
pub fn refusal(status: StatusCode, text: &'static str) -> Served {
    Served {
        status,
        content_type: TEXT_TYPE,
        filename: None,
        body: Bytes::from_static(text.as_bytes()),
    }
}

/// The 404 of a path the site does not have: it lists the ones it has.
pub fn not_found() -> Served {
    let mut body = PATHS.join(" ");
    body.push('\n');
    Served {
        body: Bytes::from(body),
        ..refusal(StatusCode::NOT_FOUND, "")
    }
}

const NO_CA: &str = "Interception is off: ward has no CA, so there is nothing to install. It is \
                     created when a rule inspects (or by `ward ca init`).\n";

/// The download names, as the page's steps refer to them.
fn page_files(site: &Site) -> Files {
    Files {
        pem: "ward-ca.pem".into(),
        der: "ward-ca.crt".into(),
        profile: "ward.mobileconfig".into(),
        proxy: site.proxy.clone(),
    }
}

/// The whole page; every value in it is escaped.
pub fn page_html(site: &Site) -> String {
    let mut h = String::with_capacity(24 * 1024);
    h.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>ward: set up this device</title>\n<style>\n\
         body{font-family:system-ui,sans-serif;max-width:48rem;margin:1rem auto;padding:0 1rem;line-height:1.45}\n\
         code,pre{font-family:ui-monospace,monospace;background:#f3f3f3;border-radius:3px}\n\
         pre{padding:.5rem;overflow-x:auto;white-space:pre-wrap;word-break:break-all}\n\
         #fingerprint{word-break:break-all}\n</style>\n</head>\n<body>\n\
         <h1>Set up this device for ward</h1>\n",
    );
    proxy_section(&mut h, site);
    match &site.ca {
        Some(ca) => ca_sections(&mut h, site, ca),
        None => {
            let _ = writeln!(
                h,
                "<section id=\"ca\">\n<h2>2. Certificate</h2>\n<p id=\"no-ca\">{}</p>\n</section>",
                escape_html(NO_CA.trim_end())
            );
        }
    }
    h.push_str("</body>\n</html>\n");
    h
}

fn proxy_section(h: &mut String, site: &Site) {
    let proxy = escape_html(&site.proxy);
    let _ = writeln!(
        h,
        "<section id=\"proxy\">\n<h2>1. Use the proxy</h2>\n\
         <p>Proxy address: <code id=\"proxy-address\">{proxy}</code> (HTTP and SOCKS5 on the same port).</p>"
    );
    match &site.pac_url {
        Some(url) => {
            let _ = writeln!(
                h,
                "<p>Or paste this automatic configuration (PAC) URL into the system's or browser's \
                 proxy settings: <code id=\"pac-url\">{}</code></p>",
                escape_html(url)
            );
        }
        None => h.push_str(
            "<p>No PAC URL: the admin endpoint (<code>admin:</code>) that serves \
             <code>/proxy.pac</code> is off or has no fixed port.</p>\n",
        ),
    }
    let _ = writeln!(
        h,
        "<p>This page is also at <code>{}</code> on any device that uses the proxy.</p>\n</section>",
        escape_html(&site.setup_url)
    );
}

fn ca_sections(h: &mut String, site: &Site, ca: &CaCert) {
    let _ = writeln!(
        h,
        "<section id=\"ca\">\n<h2>2. Trust ward's certificate</h2>\n\
         <p>Inspected sites fail with certificate errors until the device trusts it. Before you \
         trust it, compare this SHA-256 fingerprint with what the device shows:</p>\n\
         <p><code id=\"fingerprint\">{}</code></p>\n<ul id=\"downloads\">\n\
         <li><a href=\"/ca.pem\">ward-ca.pem</a>: PEM (Linux, macOS, command-line tools)</li>\n\
         <li><a href=\"/ca.crt\">ward-ca.crt</a> or <a href=\"/ca.cer\">ward-ca.cer</a>: DER (Windows, Android)</li>\n\
         <li><a href=\"/ca.mobileconfig\">ward.mobileconfig</a>: profile (iOS, iPadOS, macOS)</li>\n</ul>",
        escape_html(&ca.fingerprint())
    );
    let list = platforms(&page_files(site));
    h.push_str("<nav><p>");
    let links: Vec<String> = list
        .iter()
        .map(|p| format!("<a href=\"#{}\">{}</a>", p.id, escape_html(p.title)))
        .collect();
    h.push_str(&links.join(" · "));
    h.push_str("</p></nav>\n</section>\n");
    for p in &list {
        platform_html(h, p);
    }
}

fn platform_html(h: &mut String, p: &Platform) {
    let _ = writeln!(
        h,
        "<section id=\"{}\">\n<h3>{}</h3>\n<ol>",
        p.id,
        escape_html(p.title)
    );
    for step in &p.steps {
        let _ = match step {
            Step::Say(s) => writeln!(h, "<li>{}</li>", escape_html(s)),
            Step::Run(s) => writeln!(h, "<li><pre><code>{}</code></pre></li>", escape_html(s)),
        };
    }
    h.push_str("</ol>\n</section>\n");
}

/// `ward ca show`'s steps: the same list as the page, as text, naming the real file.
pub fn steps_text(pem_path: &str, setup_url: &str) -> String {
    let files = Files {
        pem: pem_path.to_owned(),
        der: "ward-ca.crt".to_owned(),
        profile: format!("{setup_url}ca.mobileconfig"),
        proxy: "PROXY_HOST:PORT".to_owned(),
    };
    let mut t = format!(
        "Trust it (inspected sites fail with unknown-CA errors until you do). On a device that \
         uses the proxy, {setup_url} offers these steps and the downloads. A DER copy \
         (ward-ca.crt): ward ca export --der > ward-ca.crt\n"
    );
    for p in platforms(&files) {
        let _ = write!(t, "\n{}:\n", p.title);
        for step in &p.steps {
            match step {
                Step::Say(s) => {
                    let _ = writeln!(t, "  {s}");
                }
                Step::Run(s) => {
                    for line in s.lines() {
                        let _ = writeln!(t, "    {line}");
                    }
                }
            }
        }
    }
    t
}

/// Text safe inside HTML elements and double-quoted attributes.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
