//! Unit tests of flow records: redaction and the JSON lines file.

use std::fs;

use super::*;

#[test]
fn secrets_are_redacted() {
    let req = http::Request::get("https://origin.test/a?b=1")
        .header("Authorization", "Bearer s3cret")
        .header("Cookie", "session=s3cret")
        .header("proxy-authorization", "Basic czNjcmV0")
        .header("accept", "*/*")
        .body(())
        .unwrap();
    let rec = FlowRecord::from_request(&req, SystemTime::now());
    let json = serde_json::to_string(&rec).unwrap();
    assert!(
        !json.contains("s3cret") && !json.contains("czNjcmV0"),
        "{json}"
    );
    assert!(json.contains("\"authorization\",\"<redacted>\""));
    assert!(json.contains("\"accept\",\"*/*\""));
    assert_eq!(rec.path, "/a?b=1");
    assert_eq!(rec.authority.as_deref(), Some("origin.test"));
}

#[test]
fn file_gets_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flows.jsonl");
    let sink = FlowSink::open(Some(&path), Arc::default()).unwrap();
    let req = http::Request::get("/x")
        .header("host", "h.test")
        .body(())
        .unwrap();
    let rec = FlowRecord::from_request(&req, SystemTime::now());
    sink.emit(rec.clone());
    sink.emit(rec);
    drop(sink);
    let mut text = String::new();
    for _ in 0..100 {
        text = fs::read_to_string(&path).unwrap();
        if text.lines().count() == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(text.lines().count(), 2);
    let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(v["authority"], "h.test");
}
