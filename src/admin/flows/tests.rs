//! The selection rules and the endpoints' answers, without a socket.

use std::time::SystemTime;

use super::*;

fn record(host: &str, status: Option<u16>, rule: Option<&str>) -> FlowRecord {
    let req = http::Request::get(format!("https://{host}/p?token=visible"))
        .header("authorization", "Bearer s3cret-flows")
        .header("cookie", "sid=s3cret-flows")
        .body(())
        .unwrap();
    let mut rec = FlowRecord::from_request(&req, SystemTime::now());
    rec.status = status;
    rec.rule = rule.map(str::to_owned);
    rec
}

fn get(path: &str) -> Request<()> {
    Request::get(path).body(()).unwrap()
}

fn body_text(resp: Response<AdminBody>) -> String {
    match resp.into_body() {
        Either::Left(full) => {
            let bytes = collected(full);
            String::from_utf8(bytes).unwrap()
        }
        Either::Right(_) => panic!("a stream"),
    }
}

/// The whole body, on a throwaway runtime.
fn collected(full: Full<Bytes>) -> Vec<u8> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        use http_body_util::BodyExt;
        full.collect().await.unwrap().to_bytes().to_vec()
    })
}

#[test]
fn selection_by_host_status_and_rule() {
    let a = record("api.example.test", Some(404), Some("look"));
    let b = record("www.other.test", None, None);
    let sel = |q: &str| Selection::parse(q);
    assert!(sel("").matches(&a) && sel("").matches(&b));
    assert!(sel("host=API.example").matches(&a) && !sel("host=api").matches(&b));
    assert!(sel("status=404").matches(&a) && sel("status=4xx").matches(&a));
    assert!(!sel("status=5xx").matches(&a) && !sel("status=40").matches(&a));
    assert!(sel("status=-").matches(&b) && !sel("status=-").matches(&a));
    assert!(sel("rule=look").matches(&a) && !sel("rule=look").matches(&b));
    assert!(sel("rule=-").matches(&b));
    assert!(sel("host=example&status=4xx&rule=look&x=y").matches(&a));
    assert!(sel("host=%61pi").matches(&a), "percent-decoded");
}

#[test]
fn one_flow_as_json_and_404_after_eviction() {
    let ring = FlowRing::new(2);
    for _ in 0..3 {
        ring.push(record("a.test", Some(200), None));
    }
    let ok = respond(&get("/flows/3"), &ring);
    assert_eq!(ok.status(), StatusCode::OK);
    let doc: serde_json::Value = serde_json::from_str(&body_text(ok)).unwrap();
    assert_eq!(doc["id"], 3);
    assert_eq!(doc["path"], "/p?token=visible");
    let gone = respond(&get("/flows/1"), &ring);
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    let text = body_text(gone);
    assert!(
        text.contains("flow 1 has left the ring") && text.contains("flows 2 to 3"),
        "{text}"
    );
    let future = body_text(respond(&get("/flows/9"), &ring));
    assert!(future.contains("no flow 9 yet"), "{future}");
    assert_eq!(
        respond(&get("/flows/x"), &ring).status(),
        StatusCode::NOT_FOUND
    );
}

#[test]
fn page_har_and_json_carry_no_secret() {
    let ring = FlowRing::new(10);
    ring.push(record("a.test", Some(200), Some("look")));
    ring.push(record("b.test", Some(500), None));
    for path in ["/flows", "/flows/1", "/flows.har", "/flows.har?status=5xx"] {
        let text = body_text(respond(&get(path), &ring));
        assert!(!text.contains("s3cret"), "{path}: {text}");
    }
    let har: serde_json::Value =
        serde_json::from_str(&body_text(respond(&get("/flows.har?status=5xx"), &ring))).unwrap();
    let entries = har["log"]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0]["request"]["url"],
        "https://b.test/p?token=visible"
    );
}

#[test]
fn the_page_embeds_flows_that_cannot_end_its_script() {
    let ring = FlowRing::new(10);
    ring.push(record("a.test", Some(200), Some("</script><b>")));
    let page = body_text(respond(&get("/flows"), &ring));
    assert!(!page.contains("</script><b>"), "{page}");
    assert!(page.contains("\\u003c/script\\u003e"));
    assert!(page.contains("const KEEP = 10;"));
}
