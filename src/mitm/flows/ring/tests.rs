//! The ring's bounds: length, body budget, ids after eviction, slow subscribers dropped.

use std::time::SystemTime;

use super::*;
use crate::mitm::flows::bodies::CapturedBody;

fn record(path: &str) -> FlowRecord {
    let req = http::Request::get(format!("https://a.test{path}"))
        .body(())
        .unwrap();
    FlowRecord::from_request(&req, SystemTime::now())
}

#[test]
fn keeps_the_last_n_and_says_what_left() {
    let ring = FlowRing::new(3);
    assert!(matches!(ring.get(1), Lookup::NotYet));
    let ids: Vec<u64> = (0..5)
        .map(|i| ring.push(record(&format!("/{i}"))))
        .collect();
    assert_eq!(ids, [1, 2, 3, 4, 5]);
    let kept: Vec<u64> = ring.snapshot().iter().map(|(id, _)| *id).collect();
    assert_eq!(kept, [3, 4, 5]);
    match ring.get(4) {
        Lookup::Kept(rec) => assert_eq!(rec.path, "/3"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        ring.get(2),
        Lookup::Evicted {
            oldest: 3,
            newest: 5
        }
    ));
    assert!(matches!(ring.get(6), Lookup::NotYet));
    assert!(matches!(ring.get(0), Lookup::Evicted { .. }));
}

#[test]
fn bodies_past_the_budget_leave_the_oldest_first() {
    let ring = FlowRing::new(10);
    let big = "x".repeat(RING_BODY_BUDGET / 2);
    for _ in 0..3 {
        let mut rec = record("/big");
        rec.response_body = Some(CapturedBody::from_bytes(big.as_bytes(), big.len() as u64));
        ring.push(rec);
    }
    let snap = ring.snapshot();
    let with_bodies: Vec<bool> = snap
        .iter()
        .map(|(_, r)| r.response_body.is_some())
        .collect();
    assert_eq!(with_bodies, [false, true, true]);
    assert!(ring.lock().body_bytes <= RING_BODY_BUDGET);
}

#[tokio::test]
async fn events_reach_subscribers_and_a_slow_one_is_dropped() {
    let ring = FlowRing::new(10);
    let mut fast = ring.subscribe(None).expect("room").events;
    let slow = ring.subscribe(None).expect("room");
    for i in 0..SUBSCRIBER_QUEUE + 1 {
        ring.push(record(&format!("/{i}")));
        let event = fast.recv().await.expect("an event");
        assert!(
            event.starts_with(&format!("id: {}\nevent: flow\ndata: {{", i + 1)),
            "{event}"
        );
        assert!(event.ends_with("}\n\n") && event.contains(&format!("\"path\":\"/{i}\"")));
    }
    assert_eq!(ring.lock().subscribers.len(), 1, "the slow one is gone");
    drop(slow);
    drop(fast);
    ring.push(record("/after"));
    assert!(ring.lock().subscribers.is_empty());
}

#[test]
fn subscribers_are_bounded() {
    let ring = FlowRing::new(1);
    let held: Vec<_> = (0..MAX_SUBSCRIBERS)
        .map(|_| ring.subscribe(None).expect("room"))
        .collect();
    assert!(ring.subscribe(None).is_none());
    drop(held);
    assert!(
        ring.subscribe(None).is_some(),
        "closed ones free their place"
    );
}

#[test]
fn a_late_subscriber_gets_what_it_missed_once() {
    let ring = FlowRing::new(3);
    for i in 0..5 {
        ring.push(record(&format!("/{i}")));
    }
    let sub = ring.subscribe(Some(3)).expect("room");
    let ids: Vec<&str> = sub
        .backlog
        .iter()
        .map(|e| e.lines().next().unwrap())
        .collect();
    assert_eq!(ids, ["id: 4", "id: 5"]);
    assert!(
        ring.subscribe(Some(0)).unwrap().backlog.len() == 3,
        "only what is kept"
    );
}
