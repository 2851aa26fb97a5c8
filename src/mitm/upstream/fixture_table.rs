//! How close ward's upstream hello comes to each captured client's: for every fixture hello,
//! the mirrored config's real ClientHello (written by rustls into memory, then read by ward's
//! own parser) against the client's, JA4 part by part. Prints the README's table with
//! `cargo test --release --lib fixture_table -- --nocapture`.

use std::sync::Arc;

use rustls::ClientConnection;
use rustls::pki_types::ServerName;

use super::configs::{HelloKey, UpstreamConfigs};
use crate::Parsed;
use crate::target::Host;
use crate::tls::mirror::{self, Mirror};
use crate::tls::{ClientHelloFacts, parse_client_hello};

const FIXTURES: [(&str, &[u8]); 6] = [
    ("curl", include_bytes!("../../../tests/fixtures/curl.bin")),
    (
        "python",
        include_bytes!("../../../tests/fixtures/python.bin"),
    ),
    (
        "python_tls12",
        include_bytes!("../../../tests/fixtures/python_tls12.bin"),
    ),
    (
        "openssl",
        include_bytes!("../../../tests/fixtures/openssl.bin"),
    ),
    (
        "openssl_ip_sni",
        include_bytes!("../../../tests/fixtures/openssl_ip_sni.bin"),
    ),
    (
        "chromium",
        include_bytes!("../../../tests/fixtures/chromium.bin"),
    ),
];

fn parse(bytes: &[u8]) -> ClientHelloFacts {
    match parse_client_hello(bytes) {
        Ok(Parsed::Done { value, .. }) => value,
        other => panic!("{other:?}"),
    }
}

/// RFC 5746: the signalling suite rustls appends to a hello that offers TLS 1.2.
const EMPTY_RENEGOTIATION_INFO_SCSV: u16 = 0x00ff;

/// The hello ward sends an origin for a client whose hello is `client`, and the choice behind
/// it; with `follow` false, the hello of ward's own choices (what it sent before it mirrored).
fn upstream_hello(
    configs: &UpstreamConfigs,
    client: &ClientHelloFacts,
    follow: bool,
) -> (Mirror, ClientHelloFacts) {
    let m = mirror::choose(client, configs.capabilities(), false);
    let key = HelloKey {
        mirror: follow.then(|| m.clone()),
        alpn: client.alpn.iter().map(|p| p.as_bytes().to_vec()).collect(),
        // rustls's acceptor, like the origin, sees no SNI in an IP literal.
        sni: matches!(client.sni, Some(Host::Name(_))),
    };
    let name = match &client.sni {
        Some(Host::Name(n)) => ServerName::try_from(n.clone()).expect("a DNS name"),
        Some(Host::Ip(ip)) => ServerName::IpAddress((*ip).into()),
        None => ServerName::try_from("origin.test").expect("a DNS name"),
    };
    let mut conn = ClientConnection::new(configs.get(&key), name).expect("a client connection");
    let mut wire = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut wire).expect("written to memory");
    }
    (m, parse(&wire))
}

/// JA4's three parts of `fp`.
fn parts(fp: &str) -> [&str; 3] {
    let mut it = fp.splitn(3, '_');
    [(); 3].map(|()| it.next().unwrap_or(""))
}

#[test]
fn fixture_table() {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let configs = UpstreamConfigs::new(provider, None).expect("configs");
    println!(
        "| client | client JA4 | ward's upstream JA4 | a: version, SNI, ALPN | a: counts | b | c \
         | ward's own hello, unmirrored |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut notes = Vec::new();
    let yes = |b: bool| if b { "same" } else { "differs" };
    for (name, bytes) in FIXTURES {
        let client = parse(bytes);
        let (m, up) = upstream_hello(&configs, &client, true);
        let (_, own) = upstream_hello(&configs, &client, false);
        // rustls writes what the mirror chose, in its order: the choice is real, not a wish.
        // With TLS 1.2 offered it adds the renegotiation SCSV last, as OpenSSL does.
        let mut suites = m.suites.clone();
        if m.versions.contains(&0x0303) {
            suites.push(EMPTY_RENEGOTIATION_INFO_SCSV);
        }
        assert_eq!(up.ja4_input.ciphers, suites, "{name}: suites in order");
        assert_eq!(up.groups, m.groups, "{name}: groups in order");
        assert_eq!(up.versions, m.versions, "{name}: versions");
        assert_eq!(up.alpn, client.alpn, "{name}: ALPN");
        let (c, u) = (client.ja4.to_string(), up.ja4.to_string());
        let (cp, upp) = (parts(&c), parts(&u));
        // Version, SNI and ALPN characters of part a are the client's, but for an IP literal
        // in SNI: not RFC-legal, and rustls sends no SNI for an address.
        let ip_sni = matches!(client.sni, Some(Host::Ip(_)));
        let shape = |a: &str| format!("{}{}", &a[..4], &a[8..]);
        let want_shape = if ip_sni {
            shape(cp[0]).replacen('d', "i", 1)
        } else {
            shape(cp[0])
        };
        assert_eq!(want_shape, shape(upp[0]), "{name}");
        let same_set = |a: &[u16], b: &[u16]| {
            let no_grease = |v: &[u16]| {
                let mut v: Vec<u16> = v
                    .iter()
                    .copied()
                    .filter(|&x| x & 0x0f0f != 0x0a0a)
                    .collect();
                v.sort_unstable();
                v
            };
            no_grease(a) == no_grease(b)
        };
        assert_eq!(
            cp[1] == upp[1],
            same_set(&client.ja4_input.ciphers, &up.ja4_input.ciphers),
            "{name}: part b is the cipher set"
        );
        println!(
            "| {name} | `{c}` | `{u}` | {} | {} | {} | {} | `{}` |",
            yes(shape(cp[0]) == shape(upp[0])),
            yes(cp[0][4..8] == upp[0][4..8]),
            yes(cp[1] == upp[1]),
            yes(cp[2] == upp[2]),
            own.ja4
        );
        let only = |a: &[u16], b: &[u16]| -> Vec<String> {
            a.iter()
                .filter(|x| *x & 0x0f0f != 0x0a0a && !b.contains(x))
                .map(|x| format!("{x:04x}"))
                .collect()
        };
        let (ce, ue) = (&client.ja4_input.extensions, &up.ja4_input.extensions);
        notes.push(format!(
            "{name}: extensions only the client sends {:?}, only ward {:?}; suites ward lacks {}",
            only(ce, ue),
            only(ue, ce),
            only(&client.ja4_input.ciphers, &up.ja4_input.ciphers).len()
        ));
    }
    for n in notes {
        println!("{n}");
    }
}
