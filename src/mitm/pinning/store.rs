//! The pinning passthrough state file (`pinning.json` beside the CA): the hosts in
//! passthrough, until when, after how many clients. Written whole to a temporary file and
//! renamed over the old one, so a crash leaves the old list or the new one, never half. Read
//! bounded; a file that is too big or not understood is a warning and an empty list: it must
//! never stop the proxy from starting.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{MAX_TRACKED_HOSTS, Pinned};
use crate::target::Host;

/// The state file's name inside the CA directory.
pub const FILE_NAME: &str = "pinning.json";
/// A state file larger than this is not read (4096 hosts of 253 bytes fit well below it).
pub const MAX_FILE_BYTES: u64 = 2 * 1024 * 1024;

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    hosts: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    host: String,
    /// Unix seconds.
    until: u64,
    clients: u32,
}

/// Reads the passthrough list at `path`, dropping what has expired by `now`. Missing: empty.
/// Unreadable, too big, or malformed: a warning and empty.
pub fn load(path: &Path, now: SystemTime) -> Vec<(Host, Pinned)> {
    match read(path, now) {
        Ok(list) => list,
        Err(why) => {
            tracing::warn!(path = %path.display(), %why, "ignoring the pinning passthrough state file; starting with no host in passthrough");
            Vec::new()
        }
    }
}

fn read(path: &Path, now: SystemTime) -> Result<Vec<(Host, Pinned)>, String> {
    let size = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.to_string()),
    };
    if size > MAX_FILE_BYTES {
        return Err(format!("{size} bytes, more than {MAX_FILE_BYTES}"));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    parse(&bytes, now)
}

/// The list a state file's bytes hold, expired entries dropped, at most MAX_TRACKED_HOSTS.
pub fn parse(bytes: &[u8], now: SystemTime) -> Result<Vec<(Host, Pinned)>, String> {
    let file: File = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if file.version != 1 {
        return Err(format!("version {} (this ward writes 1)", file.version));
    }
    let mut out = Vec::new();
    for e in file.hosts.into_iter().take(MAX_TRACKED_HOSTS) {
        let host = Host::parse(&e.host).map_err(|err| format!("host {:?}: {err}", e.host))?;
        let until = UNIX_EPOCH + Duration::from_secs(e.until.min(u64::from(u32::MAX) * 4));
        if until > now {
            out.push((
                host,
                Pinned {
                    until,
                    clients: e.clients,
                },
            ));
        }
    }
    Ok(out)
}

/// The bytes `save` writes for `list`.
pub fn render(list: &[(Host, Pinned)]) -> Vec<u8> {
    let hosts = list
        .iter()
        .take(MAX_TRACKED_HOSTS)
        .map(|(h, p)| Entry {
            host: h.to_string(),
            until: unix_secs(p.until),
            clients: p.clients,
        })
        .collect();
    let mut out = serde_json::to_vec(&File { version: 1, hosts }).unwrap_or_default();
    out.push(b'\n');
    out
}

/// Writes `list` to `path` atomically: a temporary file beside it, then a rename.
pub fn save(path: &Path, list: &[(Host, Pinned)]) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, render(list))?;
    std::fs::rename(&tmp, path)
}

/// Seconds since the Unix epoch (0 before it).
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn round_trips_and_drops_what_expired() {
        let list = vec![
            (
                Host::parse("a.test").unwrap(),
                Pinned {
                    until: at(2_000),
                    clients: 3,
                },
            ),
            (
                Host::parse("b.test").unwrap(),
                Pinned {
                    until: at(1_000),
                    clients: 2,
                },
            ),
        ];
        let bytes = render(&list);
        assert_eq!(parse(&bytes, at(500)).unwrap(), list);
        assert_eq!(parse(&bytes, at(1_500)).unwrap(), list[..1].to_vec());
    }

    #[test]
    fn bad_files_are_errors_with_a_reason() {
        assert!(parse(b"", at(0)).is_err());
        assert!(
            parse(b"{\"version\":2,\"hosts\":[]}", at(0))
                .unwrap_err()
                .contains("version 2")
        );
        let bad_host = br#"{"version":1,"hosts":[{"host":"a b","until":9,"clients":1}]}"#;
        assert!(parse(bad_host, at(0)).unwrap_err().contains("a b"));
    }

    #[test]
    fn a_missing_file_is_empty_and_a_save_is_read_back() {
        let dir = std::env::temp_dir().join(format!("ward-pin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(FILE_NAME);
        let _ = std::fs::remove_file(&path);
        assert!(load(&path, at(0)).is_empty());
        let list = vec![(
            Host::parse("c.test").unwrap(),
            Pinned {
                until: at(99),
                clients: 4,
            },
        )];
        save(&path, &list).unwrap();
        assert_eq!(load(&path, at(0)), list);
        std::fs::write(&path, b"not json").unwrap();
        assert!(load(&path, at(0)).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    proptest! {
        #[test]
        fn any_bytes_parse_or_fail_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes, at(0));
        }
    }
}
