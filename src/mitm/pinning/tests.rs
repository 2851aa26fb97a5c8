//! Unit tests of pinning passthrough, with time passed in.

use super::*;

const SETTINGS: PinningSettings = PinningSettings {
    rejections: 3,
    window: Duration::from_secs(60),
    ttl: Duration::from_secs(600),
};

fn user(n: usize) -> ClientId {
    ClientId::User(format!("u{n}"))
}

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn secs(s: u64) -> SystemTime {
    t0() + Duration::from_secs(s)
}

#[test]
fn passthrough_after_n_distinct_clients_within_window_until_ttl() {
    let t = PinningTracker::new();
    let host = Host::parse("pinned.test").unwrap();
    assert!(!t.record_client_rejection(&SETTINGS, &host, user(1), secs(0)));
    assert!(!t.record_client_rejection(&SETTINGS, &host, user(2), secs(1)));
    assert_eq!(t.passthrough(&host, secs(1)), None);
    assert!(t.record_client_rejection(&SETTINGS, &host, user(3), secs(2)));
    let pinned = Pinned {
        until: secs(602),
        clients: 3,
    };
    assert_eq!(t.passthrough(&host, secs(3)), Some(pinned));
    assert_eq!(t.list(secs(3)), vec![(host.clone(), pinned)]);
    assert_eq!(t.count(secs(3)), 1);
    assert_eq!(
        t.passthrough(&Host::parse("other.test").unwrap(), secs(3)),
        None
    );
    assert_eq!(t.passthrough(&host, secs(602)), None);
    assert_eq!(t.count(secs(602)), 0);
}

#[test]
fn one_client_repeating_itself_never_switches_a_host() {
    let t = PinningTracker::new();
    let host = Host::parse("abused.test").unwrap();
    let addr: SocketAddr = "192.0.2.7:1000".parse().unwrap();
    for port in 0..100u16 {
        let same = ClientId::of(SocketAddr::new(addr.ip(), port), None);
        assert!(!t.record_client_rejection(&SETTINGS, &host, same, secs(0)));
    }
    // Two users behind that one address are two clients; with the address, three.
    assert!(!t.record_client_rejection(&SETTINGS, &host, user(1), secs(1)));
    assert!(t.record_client_rejection(&SETTINGS, &host, user(2), secs(1)));
}

#[test]
fn rejections_outside_the_window_do_not_add_up() {
    let t = PinningTracker::new();
    let host = Host::parse("slow.test").unwrap();
    for i in 0..10 {
        assert!(!t.record_client_rejection(&SETTINGS, &host, user(i as usize), secs(61 * i)));
    }
    assert_eq!(t.passthrough(&host, secs(610)), None);
}

#[test]
fn clear_ends_a_passthrough() {
    let t = PinningTracker::new();
    let host = Host::parse("c.test").unwrap();
    for i in 0..3 {
        t.record_client_rejection(&SETTINGS, &host, user(i), secs(0));
    }
    assert!(t.passthrough(&host, secs(1)).is_some());
    assert!(t.clear(&host, secs(1)));
    assert!(!t.clear(&host, secs(1)));
    assert_eq!(t.passthrough(&host, secs(1)), None);
}

#[test]
fn bounded_in_hosts_and_in_clients_per_host() {
    let t = PinningTracker::new();
    for i in 0..(MAX_TRACKED_HOSTS + 100) {
        let h = Host::parse(&format!("h{i}.test")).unwrap();
        t.record_client_rejection(&SETTINGS, &h, user(0), secs(0));
    }
    assert!(t.hosts.len() <= MAX_TRACKED_HOSTS);
    let many = PinningSettings {
        rejections: u32::MAX,
        ..SETTINGS
    };
    let host = Host::parse("h0.test").unwrap();
    let mut switched = 0;
    for i in 0..(MAX_CLIENTS_PER_HOST + 10) {
        switched += usize::from(t.record_client_rejection(&many, &host, user(i), secs(1)));
        assert!(t.hosts.get(&host).unwrap().clients.len() <= MAX_CLIENTS_PER_HOST);
    }
    assert_eq!(switched, 1, "failures above the cap count as the cap");
}

#[test]
fn the_state_file_carries_passthrough_across_a_restart() {
    let dir = std::env::temp_dir().join(format!("ward-pinning-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(store::FILE_NAME);
    let _ = std::fs::remove_file(&path);
    let host = Host::parse("kept.test").unwrap();
    let t = PinningTracker::with_store(path.clone(), secs(0));
    for i in 0..3 {
        t.record_client_rejection(&SETTINGS, &host, user(i), secs(0));
    }
    let again = PinningTracker::with_store(path.clone(), secs(10));
    assert_eq!(
        again.passthrough(&host, secs(10)).map(|p| p.clients),
        Some(3)
    );
    assert!(again.clear(&host, secs(10)));
    let third = PinningTracker::with_store(path.clone(), secs(11));
    assert_eq!(third.count(secs(11)), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}
