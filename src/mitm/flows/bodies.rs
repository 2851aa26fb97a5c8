//! Captured bodies: at most `flows.bodies.max` bytes of a request or response body whose media
//! type was asked for, with the body's full size, kept in the flow record as text (UTF-8) or
//! base64. Must never hold more than the cap: the tap stops copying at it and only counts.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::config::BodyCapture;

/// A body as the record keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CapturedBody {
    /// The body's size in bytes as relayed (all of it, not only what was kept).
    pub size: u64,
    /// Fewer bytes were kept than the body had (`flows.bodies.max`).
    pub truncated: bool,
    /// `base64` when `text` holds base64 of bytes that are not UTF-8; absent for UTF-8 text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// The kept bytes: UTF-8 text as it was, anything else base64.
    pub text: String,
}

impl CapturedBody {
    /// The kept prefix of a body of `size` bytes. A UTF-8 body cut inside a character keeps
    /// the whole characters before the cut, so truncation alone never turns text into base64.
    pub fn from_bytes(kept: &[u8], size: u64) -> CapturedBody {
        let truncated = (kept.len() as u64) < size;
        let text = match std::str::from_utf8(kept) {
            Ok(s) => Some(s),
            // `error_len() == None`: the bytes end inside a character, valid up to there.
            Err(e) if truncated && e.error_len().is_none() => {
                std::str::from_utf8(&kept[..e.valid_up_to()]).ok()
            }
            Err(_) => None,
        };
        match text {
            Some(text) => CapturedBody {
                size,
                truncated,
                encoding: None,
                text: text.to_owned(),
            },
            None => CapturedBody {
                size,
                truncated,
                encoding: Some("base64".into()),
                text: BASE64.encode(kept),
            },
        }
    }

    /// The bytes kept in memory by this capture, for the live ring's budget.
    pub fn held(&self) -> usize {
        self.text.len()
    }
}

/// Copies up to `max` bytes of a body as it passes, and counts all of it.
#[derive(Debug)]
pub struct BodyTap {
    kept: Vec<u8>,
    max: usize,
    seen: u64,
}

/// A tap shared between the body that feeds it and the record that reads it at the end (the
/// request body is polled by the upstream connection, the record lives with the response).
pub type SharedTap = Arc<Mutex<BodyTap>>;

impl BodyTap {
    /// A tap for a body with `content_type`, when `capture` asks for that type.
    pub fn for_type(
        capture: Option<&BodyCapture>,
        content_type: Option<&[u8]>,
    ) -> Option<SharedTap> {
        let capture = capture.filter(|c| c.wants(content_type))?;
        Some(Arc::new(Mutex::new(BodyTap {
            kept: Vec::new(),
            max: capture.max,
            seen: 0,
        })))
    }

    /// Notes one data frame: copies what still fits under the cap.
    pub fn feed(&mut self, data: &[u8]) {
        self.seen += data.len() as u64;
        let room = self.max.saturating_sub(self.kept.len());
        let take = &data[..room.min(data.len())];
        let needed = self.kept.len() + take.len();
        if needed > self.kept.capacity() {
            // Doubling as Vec would, but never past the cap: the cap is the memory promise.
            let target = (self.kept.capacity() * 2).max(needed).min(self.max);
            self.kept.reserve_exact(target - self.kept.len());
        }
        self.kept.extend_from_slice(take);
    }

    /// What the record keeps.
    pub fn captured(&self) -> CapturedBody {
        CapturedBody::from_bytes(&self.kept, self.seen)
    }
}

/// The capture of a shared tap (a poisoned lock still holds bytes worth keeping).
pub fn take(tap: &SharedTap) -> CapturedBody {
    match tap.lock() {
        Ok(t) => t.captured(),
        Err(poisoned) => poisoned.into_inner().captured(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MediaRange;
    use proptest::prelude::*;

    fn capture(max: usize) -> BodyCapture {
        BodyCapture {
            max,
            types: vec![MediaRange {
                ty: "text".into(),
                sub: None,
            }],
        }
    }

    #[test]
    fn only_wanted_types_get_a_tap() {
        let c = capture(4);
        assert!(BodyTap::for_type(Some(&c), Some(b"text/plain")).is_some());
        assert!(BodyTap::for_type(Some(&c), Some(b"image/png")).is_none());
        assert!(BodyTap::for_type(None, Some(b"text/plain")).is_none());
    }

    #[test]
    fn the_cap_holds_and_the_size_is_whole() {
        let tap = BodyTap::for_type(Some(&capture(4)), Some(b"text/plain")).unwrap();
        for chunk in [&b"ab"[..], b"cdef", b"ghij"] {
            tap.lock().unwrap().feed(chunk);
        }
        assert!(tap.lock().unwrap().kept.capacity() <= 4);
        let body = take(&tap);
        assert_eq!(
            (body.text.as_str(), body.size, body.truncated),
            ("abcd", 10, true)
        );
        assert_eq!(body.encoding, None);
    }

    #[test]
    fn binary_is_base64_and_cut_text_stays_text() {
        let bin = CapturedBody::from_bytes(&[0xff, 0x00, 0x80], 3);
        assert_eq!(bin.encoding.as_deref(), Some("base64"));
        assert_eq!(bin.text, "/wCA");
        assert!(!bin.truncated);
        // "é" is two bytes; a cap after the first keeps "a" as text.
        let cut = CapturedBody::from_bytes(&"aé".as_bytes()[..2], 3);
        assert_eq!((cut.text.as_str(), cut.encoding.as_deref()), ("a", None));
        // Whole but not UTF-8 is binary even when it looks like a cut.
        let whole = CapturedBody::from_bytes(&"aé".as_bytes()[..2], 2);
        assert_eq!(whole.encoding.as_deref(), Some("base64"));
    }

    proptest! {
        #[test]
        fn never_more_than_the_cap(max in 0usize..64, chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..8)) {
            let mut tap = BodyTap { kept: Vec::new(), max, seen: 0 };
            let mut total = 0u64;
            for c in &chunks {
                tap.feed(c);
                total += c.len() as u64;
                prop_assert!(tap.kept.len() <= max && tap.kept.capacity() <= max.max(1));
            }
            let body = tap.captured();
            prop_assert_eq!(body.size, total);
            prop_assert_eq!(body.truncated, (tap.kept.len() as u64) < total);
        }
    }
}
