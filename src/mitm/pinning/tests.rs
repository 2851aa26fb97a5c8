//! Unit tests of pinning passthrough, with time passed in.

use super::*;

const SETTINGS: PinningSettings = PinningSettings {
    rejections: 3,
    window: Duration::from_secs(60),
    ttl: Duration::from_secs(600),
};

#[test]
fn passthrough_after_n_rejections_within_window_until_ttl() {
    let t = PinningTracker::new(Some(SETTINGS));
    let host = Host::parse("pinned.test").unwrap();
    let t0 = Instant::now();
    assert!(!t.record_client_rejection(&host, t0));
    assert!(!t.record_client_rejection(&host, t0 + Duration::from_secs(1)));
    assert!(!t.pinned_passthrough(&host, t0 + Duration::from_secs(1)));
    assert!(t.record_client_rejection(&host, t0 + Duration::from_secs(2)));
    assert!(t.pinned_passthrough(&host, t0 + Duration::from_secs(3)));
    assert!(!t.pinned_passthrough(&Host::parse("other.test").unwrap(), t0));
    assert!(!t.pinned_passthrough(&host, t0 + Duration::from_secs(603)));
}

#[test]
fn rejections_outside_the_window_do_not_add_up() {
    let t = PinningTracker::new(Some(SETTINGS));
    let host = Host::parse("slow.test").unwrap();
    let t0 = Instant::now();
    for i in 0..10 {
        assert!(!t.record_client_rejection(&host, t0 + Duration::from_secs(61 * i)));
    }
    assert!(!t.pinned_passthrough(&host, t0 + Duration::from_secs(610)));
}

#[test]
fn disabled_and_bounded() {
    let off = PinningTracker::new(None);
    let host = Host::parse("x.test").unwrap();
    let t0 = Instant::now();
    for _ in 0..5 {
        assert!(!off.record_client_rejection(&host, t0));
    }
    let t = PinningTracker::new(Some(SETTINGS));
    for i in 0..(MAX_TRACKED_HOSTS + 100) {
        t.record_client_rejection(&Host::parse(&format!("h{i}.test")).unwrap(), t0);
    }
    assert!(t.hosts.len() <= MAX_TRACKED_HOSTS);
}
