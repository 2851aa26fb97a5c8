use super::*;
use crate::mitm::flows::FlowRecord;

#[test]
fn records_become_entries() {
    let req = http::Request::post("https://site.test/a?x=1&y")
        .header("authorization", "Bearer s3cret")
        .body(())
        .unwrap();
    let mut rec = FlowRecord::from_request(&req, std::time::SystemTime::now());
    rec.status = Some(201);
    rec.request_bytes = 5;
    rec.mismatch.push("sni_authority");
    let line = serde_json::to_string(&rec).unwrap();
    let input = format!("{line}\n\nnot json\n{line}\n{{\"half\":");
    let har = har_from_lines(input.as_bytes()).unwrap();
    assert_eq!(har.skipped, 2);
    let log = &har.doc["log"];
    assert_eq!(log["version"], "1.2");
    let entries = log["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let e = &entries[0];
    assert_eq!(e["request"]["url"], "https://site.test/a?x=1&y");
    assert_eq!(e["request"]["method"], "POST");
    assert_eq!(e["request"]["bodySize"], 5);
    assert_eq!(e["request"]["queryString"][1]["name"], "y");
    assert_eq!(e["response"]["status"], 201);
    assert_eq!(e["response"]["statusText"], "Created");
    assert_eq!(e["_ward"]["mismatch"][0], "sni_authority");
    assert!(!har.doc.to_string().contains("s3cret"));
}

#[test]
fn response_side_cookies_and_timings() {
    let req = http::Request::get("https://a.test/p?q=a%20b+c&bad=%zz")
        .header("cookie", "sid=s3cret; theme=dark")
        .body(())
        .unwrap();
    let mut rec = FlowRecord::from_request(&req, std::time::SystemTime::now());
    let resp = http::Response::builder()
        .status(302)
        .header("set-cookie", "tok=s3cret; Secure")
        .header("location", "/next")
        .header("content-type", "text/html")
        .body(())
        .unwrap();
    crate::mitm::flows::capture::record_response(&mut rec, &resp);
    rec.timings = Some(Timings::from_marks(Some(1500), Some(4000), 10_000));
    let line = serde_json::to_string(&rec).unwrap();
    let har = har_from_lines(line.as_bytes()).unwrap();
    let e = &har.doc["log"]["entries"][0];
    assert_eq!(e["request"]["queryString"][0]["value"], "a b c");
    assert_eq!(e["request"]["queryString"][1]["value"], "%zz");
    assert_eq!(e["request"]["cookies"][1]["name"], "theme");
    assert_eq!(e["response"]["cookies"][0]["name"], "tok");
    assert_eq!(e["response"]["cookies"][0]["value"], "<redacted>");
    assert_eq!(e["response"]["statusText"], "Found");
    assert_eq!(e["response"]["redirectURL"], "/next");
    assert_eq!(e["response"]["content"]["mimeType"], "text/html");
    assert_eq!(e["timings"]["send"], 1.5);
    assert_eq!(e["timings"]["wait"], 2.5);
    assert_eq!(e["timings"]["receive"], 6.0);
    assert_eq!(e["timings"]["dns"], -1);
    assert_eq!(e["time"], 10.0);
    assert!(!har.doc.to_string().contains("s3cret"));
}

#[test]
fn a_connections_set_up_is_on_its_first_entry_and_connect_includes_ssl() {
    let req = http::Request::get("https://a.test/").body(()).unwrap();
    let mut first = FlowRecord::from_request(&req, std::time::SystemTime::now());
    first.timings = Some(Timings::from_marks(Some(0), Some(1000), 2000));
    let mut later = first.clone();
    first.setup = Some(Setup {
        dns_us: Some(500),
        connect_us: Some(1500),
        ssl_us: Some(4000),
    });
    let mut through_upstream = first.clone();
    through_upstream.setup = Some(Setup {
        dns_us: None,
        ..first.setup.unwrap()
    });
    later.setup = None;
    let lines: Vec<String> = [&first, &later, &through_upstream]
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    let har = har_from_lines(lines.join("\n").as_bytes()).unwrap();
    let e = &har.doc["log"]["entries"];
    let t = |i: usize, k: &str| e[i]["timings"][k].clone();
    assert_eq!(
        (t(0, "dns"), t(0, "connect"), t(0, "ssl")),
        (0.5.into(), 5.5.into(), 4.0.into())
    );
    assert_eq!(t(0, "blocked"), -1);
    assert_eq!(
        e[0]["time"], 8.0,
        "dns + connect (ssl inside it) + send/wait/receive"
    );
    for k in ["dns", "connect", "ssl"] {
        assert_eq!(t(1, k), -1, "{k} on a later entry");
    }
    assert_eq!(e[1]["time"], 2.0);
    assert_eq!((t(2, "dns"), t(2, "connect")), ((-1).into(), 5.5.into()));
    assert_eq!(e[2]["time"], 7.5);
}

#[test]
fn captured_bodies_become_post_data_and_content() {
    use crate::mitm::flows::bodies::CapturedBody;
    let req = http::Request::post("https://a.test/up")
        .header("content-type", "application/json")
        .header("authorization", "Bearer s3cret")
        .body(())
        .unwrap();
    let mut rec = FlowRecord::from_request(&req, std::time::SystemTime::now());
    rec.request_body = Some(CapturedBody::from_bytes(b"{\"a\":1}", 7));
    rec.response_body = Some(CapturedBody::from_bytes(&[0xff, 0xfe], 10));
    rec.response_bytes = 10;
    let line = serde_json::to_string(&rec).unwrap();
    let har = har_from_lines(line.as_bytes()).unwrap();
    let e = &har.doc["log"]["entries"][0];
    let post = &e["request"]["postData"];
    assert_eq!(post["mimeType"], "application/json");
    assert_eq!(post["text"], "{\"a\":1}");
    assert!(post.get("comment").is_none());
    let content = &e["response"]["content"];
    assert_eq!(content["encoding"], "base64");
    assert_eq!(content["text"], "//4=");
    assert_eq!(content["size"], 10);
    let comment = content["comment"].as_str().unwrap();
    assert!(comment.contains("2 of 10 bytes"), "{comment}");
    // No capture, no body fields.
    rec.request_body = None;
    rec.response_body = None;
    let line = serde_json::to_string(&rec).unwrap();
    let har = har_from_lines(line.as_bytes()).unwrap();
    let e = &har.doc["log"]["entries"][0];
    assert!(e["request"].get("postData").is_none());
    assert!(e["response"]["content"].get("text").is_none());
    assert!(!har.doc.to_string().contains("s3cret"));
}

proptest::proptest! {
    #[test]
    fn decode_never_panics(s in ".{0,64}") {
        let _ = decode(&s);
    }
}
