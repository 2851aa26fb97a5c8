//! The flows file (JSON lines of flow records) as a HAR 1.2 log, for browsers' and other tools'
//! viewers. Pure conversion over what the records hold: bodies only where `flows.bodies`
//! captured them (`postData`, `content.text`; base64 for bytes that are not UTF-8, a comment
//! when cut at the cap), headers exactly as recorded (secrets already redacted), cookies by
//! name with a redacted value, and only the timings ward measured (the connection's set-up is shared by its requests, so `dns`/`connect`/`ssl` are
//! HAR's -1, "does not apply to this request").

use std::io::BufRead;

use serde::Deserialize;

use super::flows::bodies::CapturedBody;
use super::flows::capture::Timings;
use crate::log::Setup;
use serde_json::{Value, json};

const HAR_VERSION: &str = "1.2";
/// HAR's "unknown" for sizes and timings.
const UNKNOWN: i64 = -1;

/// A flow record as read back: owned, and tolerant of fields added or missing across versions.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FlowLine {
    time: String,
    conn_id: Option<String>,
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
    request_cookies: Vec<String>,
    response_version: Option<String>,
    status_text: Option<String>,
    response_headers: Vec<(String, String)>,
    response_cookies: Vec<String>,
    timings: Option<Timings>,
    setup: Option<Setup>,
    request_body: Option<CapturedBody>,
    response_body: Option<CapturedBody>,
}

/// What a redacted cookie value reads as, the same marker the headers carry.
const REDACTED: &str = "<redacted>";

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
    Ok(Har {
        doc: document(entries),
        skipped,
    })
}

/// The HAR of records held in memory (the admin's live ring), in the order given.
pub fn har_from_records<'a>(records: impl Iterator<Item = &'a super::flows::FlowRecord>) -> Value {
    let entries = records
        .filter_map(|rec| serde_json::to_value(rec).ok())
        .filter_map(|v| serde_json::from_value::<FlowLine>(v).ok())
        .map(|rec| entry(&rec))
        .collect();
    document(entries)
}

fn document(entries: Vec<Value>) -> Value {
    json!({
        "log": {
            "version": HAR_VERSION,
            "creator": { "name": "ward", "version": env!("CARGO_PKG_VERSION") },
            "pages": [],
            "entries": entries,
        }
    })
}

fn entry(rec: &FlowLine) -> Value {
    let host = rec
        .authority
        .as_deref()
        .or(rec.sni.as_deref())
        .unwrap_or("unknown");
    let status = rec.status.unwrap_or(0);
    let reason = rec.status_text.clone().unwrap_or_else(|| {
        let canonical = http::StatusCode::from_u16(status).ok();
        canonical
            .and_then(|s| s.canonical_reason())
            .unwrap_or("")
            .to_string()
    });
    let (timings, time) = timings(rec);
    let mime = header(&rec.response_headers, "content-type").unwrap_or("");
    let mut request = json!({
        "method": rec.method,
        "url": format!("https://{host}{}", rec.path),
        "httpVersion": rec.version,
        "cookies": cookies(&rec.request_cookies),
        "headers": headers(&rec.request_headers),
        "queryString": query_string(&rec.path),
        "headersSize": UNKNOWN,
        "bodySize": rec.request_bytes,
    });
    if let Some(body) = &rec.request_body {
        let mime = header(&rec.request_headers, "content-type").unwrap_or("");
        request["postData"] = post_data(body, mime);
    }
    let mut content = json!({ "size": rec.response_bytes, "mimeType": mime });
    if let Some(body) = &rec.response_body {
        content["text"] = body.text.clone().into();
        if let Some(encoding) = &body.encoding {
            content["encoding"] = encoding.clone().into();
        }
        if let Some(comment) = truncated(body) {
            content["comment"] = comment.into();
        }
    }
    json!({
        "startedDateTime": rec.time,
        "time": time,
        "request": request,
        "response": {
            "status": status,
            "statusText": reason,
            "httpVersion": rec.response_version.as_deref().unwrap_or(&rec.version),
            "cookies": cookies(&rec.response_cookies),
            "headers": headers(&rec.response_headers),
            "content": content,
            "redirectURL": header(&rec.response_headers, "location").unwrap_or(""),
            "headersSize": UNKNOWN,
            "bodySize": rec.response_bytes,
        },
        "cache": {},
        "timings": timings,
        "_ward": {
            "conn_id": rec.conn_id,
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

/// HAR timings in milliseconds and their sum (HAR's `time`). A record from before timings
/// were kept has only its whole duration, which is all `wait` then. The connection's set-up
/// (`dns`, `connect`, `ssl`) is on its first exchange only, -1 on the others and for what ward
/// did not do, as browsers write it; `connect` includes `ssl` (HAR 1.2), so `time` counts
/// `ssl` once. `blocked` is -1: ward queues no request behind another.
fn timings(rec: &FlowLine) -> (Value, f64) {
    let ms = |us: u64| us as f64 / 1000.0;
    let (send, wait, receive) = match rec.timings {
        Some(t) => (ms(t.send_us), ms(t.wait_us), ms(t.receive_us)),
        None => (0.0, rec.duration_ms as f64, 0.0),
    };
    let setup = rec.setup.unwrap_or_default();
    let dns = setup.dns_us.map(ms);
    let ssl = setup.ssl_us.map(ms);
    let connect = match (setup.connect_us.map(ms), ssl) {
        (Some(c), s) => Some(c + s.unwrap_or(0.0)),
        (None, _) => None,
    };
    let har = |t: Option<f64>| t.map_or(json!(UNKNOWN), |t| json!(t));
    let doc = json!({
        "blocked": UNKNOWN, "dns": har(dns), "connect": har(connect), "ssl": har(ssl),
        "send": send, "wait": wait, "receive": receive,
    });
    let time = dns.unwrap_or(0.0) + connect.unwrap_or(0.0) + send + wait + receive;
    (doc, time)
}

/// HAR's `postData` for a captured request body. HAR 1.2 has no `encoding` here (only in
/// `content`): base64 text says so in `_encoding` and in the comment.
fn post_data(body: &CapturedBody, mime: &str) -> Value {
    let mut doc = json!({ "mimeType": mime, "params": [], "text": body.text });
    let mut notes = Vec::new();
    if let Some(encoding) = &body.encoding {
        doc["_encoding"] = encoding.clone().into();
        notes.push(format!("text is {encoding} (the body is not UTF-8)"));
    }
    notes.extend(truncated(body));
    if !notes.is_empty() {
        doc["comment"] = notes.join("; ").into();
    }
    doc
}

/// The comment a body cut at `flows.bodies.max` carries.
fn truncated(body: &CapturedBody) -> Option<String> {
    body.truncated.then(|| {
        format!(
            "truncated by ward (flows.bodies.max): {} of {} bytes kept",
            kept_bytes(body),
            body.size
        )
    })
}

/// How many body bytes the capture holds (base64 decoded).
fn kept_bytes(body: &CapturedBody) -> usize {
    use base64::Engine as _;
    match body.encoding.as_deref() {
        Some("base64") => base64::engine::general_purpose::STANDARD
            .decode(&body.text)
            .map_or(0, |b| b.len()),
        _ => body.text.len(),
    }
}

fn headers(list: &[(String, String)]) -> Vec<Value> {
    list.iter()
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .collect()
}

fn header<'a>(list: &'a [(String, String)], name: &str) -> Option<&'a str> {
    list.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn cookies(names: &[String]) -> Vec<Value> {
    names
        .iter()
        .map(|name| json!({ "name": name, "value": REDACTED }))
        .collect()
}

/// `?a=1&b` as HAR name/value pairs, percent-decoded (`+` is a space in a query).
fn query_string(path: &str) -> Vec<Value> {
    let Some((_, query)) = path.split_once('?') else {
        return Vec::new();
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            json!({ "name": decode(name), "value": decode(value) })
        })
        .collect()
}

/// Percent-decoding that keeps a malformed escape as written, bytes read as lossy UTF-8.
pub(crate) fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests;
