//! The flows file (JSON lines of flow records) as a HAR 1.2 log, for browsers' and other tools'
//! viewers. Pure conversion over what the records hold: no bodies, no response headers, and
//! the request headers exactly as recorded (secrets already redacted).

use std::io::BufRead;

use serde::Deserialize;
use serde_json::{Value, json};

const HAR_VERSION: &str = "1.2";
/// HAR's "unknown" for sizes and timings.
const UNKNOWN: i64 = -1;

/// A flow record as read back: owned, and tolerant of fields added or missing across versions.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FlowLine {
    time: String,
    client: Option<String>,
    user: Option<String>,
    sni: Option<String>,
    connect: Option<String>,
    mismatch: Vec<String>,
    method: String,
    authority: Option<String>,
    path: String,
    version: String,
    status: Option<u16>,
    request_bytes: u64,
    response_bytes: u64,
    duration_ms: u64,
    rule: Option<String>,
    error: Option<String>,
    request_headers: Vec<(String, String)>,
}

/// The HAR document and how many lines were skipped because they did not parse (a line being
/// written while the file is read, or not a flow record at all).
#[derive(Debug)]
pub struct Har {
    /// The HAR 1.2 document.
    pub doc: Value,
    /// Lines that did not parse as flow records.
    pub skipped: usize,
}

/// Reads JSON lines and builds `{"log": {...}}`, one entry per record in file order.
pub fn har_from_lines(input: impl BufRead) -> std::io::Result<Har> {
    let mut entries = Vec::new();
    let mut skipped = 0;
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<FlowLine>(&line) {
            Ok(rec) if !rec.method.is_empty() => entries.push(entry(&rec)),
            _ => skipped += 1,
        }
    }
    let doc = json!({
        "log": {
            "version": HAR_VERSION,
            "creator": { "name": "ward", "version": env!("CARGO_PKG_VERSION") },
            "pages": [],
            "entries": entries,
        }
    });
    Ok(Har { doc, skipped })
}

fn entry(rec: &FlowLine) -> Value {
    let host = rec
        .authority
        .as_deref()
        .or(rec.sni.as_deref())
        .unwrap_or("unknown");
    let headers: Vec<Value> = rec
        .request_headers
        .iter()
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .collect();
    let status = rec.status.unwrap_or(0);
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let time = i64::try_from(rec.duration_ms).unwrap_or(i64::MAX);
    json!({
        "startedDateTime": rec.time,
        "time": time,
        "request": {
            "method": rec.method,
            "url": format!("https://{host}{}", rec.path),
            "httpVersion": rec.version,
            "cookies": [],
            "headers": headers,
            "queryString": query_string(&rec.path),
            "headersSize": UNKNOWN,
            "bodySize": rec.request_bytes,
        },
        "response": {
            "status": status,
            "statusText": reason,
            "httpVersion": rec.version,
            "cookies": [],
            "headers": [],
            "content": { "size": rec.response_bytes, "mimeType": "" },
            "redirectURL": "",
            "headersSize": UNKNOWN,
            "bodySize": rec.response_bytes,
        },
        "cache": {},
        // Only the whole duration is measured; HAR wants send/wait/receive, so it is all wait.
        "timings": { "send": 0, "wait": time, "receive": 0 },
        "_ward": {
            "client": rec.client,
            "user": rec.user,
            "sni": rec.sni,
            "connect": rec.connect,
            "mismatch": rec.mismatch,
            "rule": rec.rule,
            "error": rec.error,
        },
    })
}

/// `?a=1&b` as HAR name/value pairs, left percent-encoded as recorded.
fn query_string(path: &str) -> Vec<Value> {
    let Some((_, query)) = path.split_once('?') else {
        return Vec::new();
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            json!({ "name": name, "value": value })
        })
        .collect()
}

#[cfg(test)]
mod tests {
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
}
