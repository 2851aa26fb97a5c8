//! Test helpers shared by the pure parsers' unit tests (`tls`, `front::http`, `front::socks5`):
//! unwrapping a [`Parsed`], the every-prefix check of DESIGN.md practice 2, and the
//! random-bytes property. Compiled for tests only; no I/O.

use std::fmt::Debug;

use crate::Parsed;

/// The value and `consumed` of a `Done`; panics on `Incomplete`.
pub fn done<T>(parsed: Parsed<T>) -> (T, usize) {
    match parsed {
        Parsed::Done { value, consumed } => (value, consumed),
        Parsed::Incomplete => panic!("incomplete"),
    }
}

/// Every prefix of `msg` is `Incomplete`; the whole is `Done`, consuming exactly `msg`; and
/// with `next` after it (the start of whatever follows on the wire) the answer is the same, so
/// a pipelined message is left alone. Returns the parsed value.
pub fn assert_prefixes<T: PartialEq + Debug, E: PartialEq + Debug>(
    msg: &[u8],
    next: &[u8],
    parse: impl Fn(&[u8]) -> Result<Parsed<T>, E>,
) -> T {
    for i in 0..msg.len() {
        assert_eq!(
            parse(&msg[..i]),
            Ok(Parsed::Incomplete),
            "prefix of {i} bytes of {msg:02x?}"
        );
    }
    let whole = parse(msg).expect("whole message parses");
    let Parsed::Done { consumed, .. } = &whole else {
        panic!("whole message incomplete: {msg:02x?}");
    };
    assert_eq!(*consumed, msg.len(), "the whole message is consumed");
    let mut longer = msg.to_vec();
    longer.extend_from_slice(next);
    assert_eq!(
        parse(&longer),
        Ok(whole),
        "bytes after the message change nothing"
    );
    done(parse(msg).expect("parses again")).0
}

/// A property test named `random_bytes_never_panic`: random bytes up to `$max` long, fed to
/// each parser, never make one panic (whatever it answers).
macro_rules! random_bytes_never_panic {
    ($max:expr; $($parse:expr),+ $(,)?) => {
        ::proptest::proptest! {
            #[test]
            fn random_bytes_never_panic(
                bytes in ::proptest::collection::vec(::proptest::prelude::any::<u8>(), 0..$max)
            ) {
                $( let _ = $parse(&bytes); )+
            }
        }
    };
}
pub(crate) use random_bytes_never_panic;
