//! The page, the downloads and the text of `ward ca show`, from a real CA certificate.

use base64::Engine as _;

use super::*;

/// A real self-signed CA certificate (made here, so the test needs no file).
fn ca() -> CaCert {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).expect("self-signed");
    CaCert::from_pem(&cert.pem()).expect("parses")
}

fn site(ca: Option<CaCert>) -> Site {
    Site {
        ca,
        proxy: "ward.example:8080".into(),
        pac_url: Some("http://ward.example:9090/proxy.pac".into()),
        setup_url: Site::setup_url(&Host::Name("ward.setup".into())),
    }
}

#[test]
fn downloads_are_the_pem_its_der_and_a_profile() {
    let ca = ca();
    let s = site(Some(ca.clone()));
    let pem = respond("/ca.pem", &s).expect("pem");
    assert_eq!((pem.status, pem.content_type), (StatusCode::OK, PEM_TYPE));
    assert_eq!(pem.body, ca.pem.as_bytes());
    let b64: String = ca.pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    for path in ["/ca.crt", "/ca.cer", "/ca.der"] {
        let r = respond(path, &s).expect("der");
        assert_eq!(
            (r.status, r.content_type),
            (StatusCode::OK, DER_TYPE),
            "{path}"
        );
        assert_eq!(r.body, der, "{path} is the PEM's DER");
    }
    let p = respond("/ca.mobileconfig", &s).expect("profile");
    assert_eq!(p.content_type, "application/x-apple-aspen-config");
    let resp = p.into_response();
    assert_eq!(
        resp.headers()[header::CONTENT_DISPOSITION],
        "attachment; filename=\"ward.mobileconfig\""
    );
    assert!(respond("/metrics", &s).is_none());
}

#[test]
fn the_page_shows_fingerprint_addresses_and_every_platform() {
    let ca = ca();
    let html = page_html(&site(Some(ca.clone())));
    let fp = ca.fingerprint();
    assert_eq!(fp.len(), 32 * 3 - 1);
    assert!(html.contains(&fp));
    assert!(html.contains("<code id=\"proxy-address\">ward.example:8080</code>"));
    assert!(html.contains("http://ward.example:9090/proxy.pac"));
    for title in [
        "Windows",
        "macOS",
        "iOS and iPadOS",
        "Android",
        "Debian and Ubuntu",
        "Fedora, RHEL and CentOS",
        "Arch Linux",
        "Firefox",
        "Chromium and Chrome",
        "Java",
        "Python",
        "Node.js",
        "curl",
        "git",
        "Docker",
    ] {
        assert!(html.contains(&format!("<h3>{title}</h3>")), "{title}");
    }
    for needle in [
        "certutil -addstore -f Root ward-ca.pem",
        "security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain",
        "Certificate Trust Settings",
        "Android 7",
        "keytool -importcert -cacerts",
        "REQUESTS_CA_BUNDLE",
        "SSL_CERT_FILE",
        "NODE_EXTRA_CA_CERTS",
        "CURL_CA_BUNDLE",
        "http.sslCAInfo",
        "/etc/docker/certs.d",
        "security.enterprise_roots.enabled",
        "Certificates.Install",
    ] {
        assert!(html.contains(&escape_html(needle)), "missing {needle}");
    }
    assert!(!html.contains("<script"), "no JavaScript");
}

#[test]
fn without_a_ca_the_page_says_interception_is_off() {
    let s = site(None);
    let html = page_html(&s);
    assert!(html.contains("Interception is off"));
    assert!(!html.contains("href=\"/ca.pem\""));
    assert!(!html.contains("<h3>Windows</h3>"));
    assert!(
        html.contains("ward.example:8080"),
        "the proxy is still worth setting"
    );
    let r = respond("/ca.crt", &s).expect("answered");
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[test]
fn values_are_escaped() {
    let mut s = site(None);
    s.proxy = "<b>\"x\"&'".into();
    s.pac_url = Some("http://<i>/".into());
    let html = page_html(&s);
    assert!(html.contains("&lt;b&gt;&quot;x&quot;&amp;&#39;"));
    assert!(!html.contains("<b>") && !html.contains("<i>"));
}

#[test]
fn ca_show_text_has_the_same_platforms_naming_the_file() {
    let text = steps_text("/etc/ward/certs/ca.pem", "http://ward.setup/");
    for p in platforms(&page_files(&site(None))) {
        assert!(text.contains(&format!("\n{}:\n", p.title)), "{}", p.title);
    }
    assert!(text.contains("    certutil -addstore -f Root /etc/ward/certs/ca.pem\n"));
    assert!(text.contains("http://ward.setup/ca.mobileconfig"));
    assert!(text.contains("    COPY ward-ca.pem /usr/local/share/ca-certificates/ward-ca.crt\n    RUN update-ca-certificates\n"));
}

#[test]
fn pac_url_from_the_proxy_side() {
    let a = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
    assert_eq!(
        admin_pac_url(a("10.0.0.2:9090"), "w.lan").as_deref(),
        Some("http://10.0.0.2:9090/proxy.pac")
    );
    assert_eq!(
        admin_pac_url(a("0.0.0.0:9090"), "w.lan").as_deref(),
        Some("http://w.lan:9090/proxy.pac")
    );
    assert_eq!(admin_pac_url(a("127.0.0.1:0"), "w.lan"), None);
    assert_eq!(admin_pac_url(None, "w.lan"), None);
}

#[test]
fn a_pem_without_a_certificate_is_refused() {
    assert!(CaCert::from_pem("").is_err());
    assert!(
        CaCert::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").is_err()
    );
}
