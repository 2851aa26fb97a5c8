//! `flows:`: a path, or `{ file, keep, bodies: { max, types } }`. Pure.

use super::super::flows::{
    BodyCapture, DEFAULT_BODY_CAPTURE, DEFAULT_BODY_TYPES, DEFAULT_KEEP, Flows, MAX_BODY_CAPTURE,
    MAX_KEEP, parse_media_range, parse_size,
};
use super::super::raw::{RawBodies, RawFlows, S};
use super::super::values::parse_positive;
use super::Checker;

impl Checker<'_> {
    pub(super) fn flows(&mut self, raw: Option<S<RawFlows>>) -> Flows {
        let Some(raw) = raw else {
            return Flows::default();
        };
        let obj = match raw.value {
            RawFlows::File(path) => {
                let path = S::new(path, raw.referenced, raw.defined);
                return Flows {
                    file: self.path(Some(&path), "flows"),
                    ..Flows::default()
                };
            }
            RawFlows::Object(obj) => obj,
        };
        self.unknown(
            "flows",
            &obj.unknown,
            super::super::raw::RawFlowsObject::KEYS,
        );
        let keep = self.parsed(obj.keep.as_ref(), "flows.keep", |s| {
            match parse_positive::<usize>(s)? {
                n if n > MAX_KEEP => Err(format!("{n} is more than {MAX_KEEP} records")),
                n => Ok(n),
            }
        });
        Flows {
            file: self.path(obj.file.as_ref(), "flows.file"),
            keep: keep.unwrap_or(DEFAULT_KEEP),
            bodies: obj.bodies.map(|b| self.bodies(b.value)),
        }
    }

    fn bodies(&mut self, raw: RawBodies) -> BodyCapture {
        self.unknown("flows.bodies", &raw.unknown, RawBodies::KEYS);
        let max = self.parsed(
            raw.max.as_ref(),
            "flows.bodies.max",
            |s| match parse_size(s)? {
                0 => Err(format!(
                    "{s:?}: a cap of zero captures nothing; omit `bodies`"
                )),
                n if n > MAX_BODY_CAPTURE => Err(format!(
                    "{s:?} is more than {} MiB per body",
                    MAX_BODY_CAPTURE >> 20
                )),
                n => Ok(n),
            },
        );
        let types = match raw.types.as_ref() {
            Some(_) => self.list(raw.types.as_ref(), "flows.bodies.types", parse_media_range),
            None => DEFAULT_BODY_TYPES
                .iter()
                .map(|t| parse_media_range(t).expect("the default types parse"))
                .collect(),
        };
        BodyCapture {
            max: max.unwrap_or(DEFAULT_BODY_CAPTURE),
            types,
        }
    }
}
