//! Invariants every incremental ward parser keeps, checked by each fuzz target.

use ward::Parsed;

/// A `Done` parse took no more than it was given, and parsing exactly the bytes it took gives
/// the same answer (a parser must never have looked past its own end). Returns the value.
pub fn done_is_self_contained<T, E>(
    buf: &[u8],
    got: Result<Parsed<T>, E>,
    parse: impl Fn(&[u8]) -> Result<Parsed<T>, E>,
) -> Option<T>
where
    T: PartialEq + std::fmt::Debug,
    E: std::fmt::Debug,
{
    let Ok(Parsed::Done { value, consumed }) = got else {
        return None;
    };
    assert!(consumed <= buf.len(), "consumed {consumed} of {} bytes", buf.len());
    match parse(&buf[..consumed]) {
        Ok(Parsed::Done { value: again, consumed: c }) => {
            assert_eq!(c, consumed, "re-parse of the consumed bytes took a different length");
            assert_eq!(again, value, "re-parse of the consumed bytes gave another value");
        }
        other => panic!("the consumed bytes alone do not parse: {other:?}"),
    }
    Some(value)
}
