//! Unit tests of the leaf forge and its cache, verified with webpki as a client would.

use super::*;
use crate::mitm::ca::KeyAccess;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{ServerName, UnixTime};

fn cache() -> (tempfile::TempDir, LeafCache) {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(Ca::init(dir.path(), false).unwrap());
    (dir, LeafCache::new(ca, DEFAULT_CAPACITY).unwrap())
}

fn name(s: &str) -> LeafName {
    Host::parse(s).unwrap()
}

fn verify(cache: &LeafCache, key: &CertifiedKey, server: &str) -> Result<(), rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cache.ca().cert_der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .unwrap();
    let server = ServerName::try_from(server.to_string()).unwrap();
    verifier
        .verify_server_cert(&key.cert[0], &key.cert[1..], &server, &[], UnixTime::now())
        .map(|_| ())
}

#[test]
fn forged_leaf_verifies_for_its_name_only() {
    let (_dir, cache) = cache();
    let now = SystemTime::now();
    let leaf = cache.get_or_forge(&name("Origin.Test."), &[], now).unwrap();
    assert_eq!(leaf.cert.len(), 2, "chain is [leaf, ca]");
    verify(&cache, &leaf, "origin.test").unwrap();
    assert!(verify(&cache, &leaf, "other.test").is_err());
    let ip = cache.get_or_forge(&name("127.0.0.1"), &[], now).unwrap();
    verify(&cache, &ip, "127.0.0.1").unwrap();
    let extra = ["www.origin2.test".to_string(), "not a name".to_string()];
    let both = cache
        .get_or_forge(&name("origin2.test"), &extra, now)
        .unwrap();
    verify(&cache, &both, "www.origin2.test").unwrap();
}

#[test]
fn leaf_validity_is_bounded() {
    let (_dir, cache) = cache();
    let now = SystemTime::now();
    let leaf = cache.get_or_forge(&name("a.test"), &[], now).unwrap();
    let (nb, na) = super::super::der::validity(&leaf.cert[0]).unwrap();
    assert!(nb <= now - Duration::from_secs(3500));
    assert!(na.duration_since(nb).unwrap() <= MAX_LEAF_VALIDITY + BACKDATE);
    assert!(na <= cache.ca().not_after());
    // CA/Browser Forum: at most 200 days from March 2026, backdating included.
    let days = na.duration_since(nb).unwrap().as_secs() / 86_400;
    assert_eq!(days, 197, "197 days and the hour of backdating");
}

#[test]
fn leaf_key_identifiers_name_the_ca_also_after_a_reload() {
    use super::super::der::key_identifiers;
    let (dir, cache) = cache();
    let now = SystemTime::now();
    let (ca_ski, _) = key_identifiers(cache.ca().cert_der());
    let ca_ski = ca_ski.expect("the CA has a subject key identifier");
    let check = |cache: &LeafCache, host: &str| {
        let leaf = cache.get_or_forge(&name(host), &[], now).unwrap();
        let (ski, aki) = key_identifiers(&leaf.cert[0]);
        assert_eq!(aki.as_ref(), Some(&ca_ski), "{host}: AKI is the CA's SKI");
        let ski = ski.expect("the leaf has a subject key identifier");
        assert_ne!(ski, ca_ski, "{host}: the leaf's own key");
        assert!(ski.len() >= 16, "{host}: a hash, not a placeholder");
    };
    check(&cache, "a.test");
    // The CA as a restarted proxy reads it from disk.
    let reloaded = Arc::new(Ca::load(dir.path(), KeyAccess::Private).unwrap());
    assert_eq!(
        key_identifiers(reloaded.cert_der()).0.as_ref(),
        Some(&ca_ski)
    );
    check(&LeafCache::new(reloaded, 4).unwrap(), "b.test");
}

/// The serial INTEGER follows the `[0] { INTEGER 2 }` version field of the TBS.
fn serial_of(der: &[u8]) -> Vec<u8> {
    const VERSION_V3: [u8; 6] = [0xa0, 0x03, 0x02, 0x01, 0x02, 0x02];
    let p = der.windows(6).position(|w| w == VERSION_V3).unwrap() + 6;
    der[p + 1..p + 1 + usize::from(der[p])].to_vec()
}

#[test]
fn serials_unique_over_1000_forges() {
    let (_dir, cache) = cache();
    let now = SystemTime::now();
    let mut serials = std::collections::HashSet::new();
    for i in 0..1000 {
        let leaf = cache
            .get_or_forge(&name(&format!("h{i}.test")), &[], now)
            .unwrap();
        let serial = serial_of(&leaf.cert[0]);
        assert!(serial.len() * 8 >= 64);
        assert!(serials.insert(serial), "serial reused at {i}");
    }
    assert_eq!(cache.forged(), 1000);
}

#[test]
fn cache_single_flight() {
    let (_dir, cache) = cache();
    let cache = Arc::new(cache);
    let now = SystemTime::now();
    let barrier = Arc::new(std::sync::Barrier::new(100));
    let threads: Vec<_> = (0..100)
        .map(|_| {
            let (cache, barrier) = (cache.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                cache.get_or_forge(&name("busy.test"), &[], now).unwrap()
            })
        })
        .collect();
    let keys: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(cache.forged(), 1);
    assert!(keys.iter().all(|k| Arc::ptr_eq(k, &keys[0])));
}

#[test]
fn cache_is_bounded_and_refreshes() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(Ca::init(dir.path(), false).unwrap());
    let cache = LeafCache::new(ca, 32).unwrap();
    let now = SystemTime::now();
    for i in 0..200 {
        cache
            .get_or_forge(&name(&format!("h{i}.test")), &[], now)
            .unwrap();
        assert!(cache.len() <= 32);
    }
    let a = cache.get_or_forge(&name("x.test"), &[], now).unwrap();
    let b = cache.get_or_forge(&name("x.test"), &[], now).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    let later = now + CACHE_MAX_AGE + Duration::from_secs(1);
    let c = cache.get_or_forge(&name("x.test"), &[], later).unwrap();
    assert!(!Arc::ptr_eq(&a, &c), "stale leaf re-forged");
}

#[test]
fn uncached_forge_uses_a_cached_leaf_but_never_fills_the_cache() {
    let (_dir, cache) = cache();
    let now = SystemTime::now();
    let a = cache.get_or_forge_uncached(&name("a.test"), now).unwrap();
    assert!(
        cache.is_empty(),
        "a leaf forged without the origin's names is not kept"
    );
    let extra = ["www.a.test".to_string()];
    let b = cache.get_or_forge(&name("a.test"), &extra, now).unwrap();
    assert!(!Arc::ptr_eq(&a, &b));
    verify(&cache, &b, "www.a.test").unwrap();
    let c = cache.get_or_forge_uncached(&name("a.test"), now).unwrap();
    assert!(Arc::ptr_eq(&b, &c), "a fresh cached leaf is reused");
    assert_eq!(cache.forged(), 2);
}
