//! Bounded polling: check a condition until it holds or a timeout passes, sleeping a little
//! longer each time. The only poll loop of the tests and benches; it never waits unbounded.

use std::fmt::Display;
use std::time::Duration;

// tokio's clock also outside a runtime (where it is the system's): one clock for the whole kit.
use tokio::time::Instant;

/// The first re-check comes this soon (most conditions hold almost at once)...
const FIRST_STEP: Duration = Duration::from_millis(1);
/// ...then the pause doubles up to this, so a slow condition is not hammered.
const MAX_STEP: Duration = Duration::from_millis(20);

/// What a condition returns: `true`/`false`, or `Some(value)` once ready.
pub trait Ready {
    /// What the wait returns once the condition holds.
    type Value;
    /// `Some` when the condition holds.
    fn ready(self) -> Option<Self::Value>;
}

impl Ready for bool {
    type Value = ();
    fn ready(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Ready for Option<T> {
    type Value = T;
    fn ready(self) -> Option<T> {
        self
    }
}

/// Checks `cond` until it holds or `timeout` has passed (it is checked at least once, and once
/// more at the deadline); `None` when it never held. For callers that report a timeout as an
/// error rather than a panic (the benches).
pub fn poll_until<R: Ready>(timeout: Duration, mut cond: impl FnMut() -> R) -> Option<R::Value> {
    let deadline = Instant::now() + timeout;
    let mut step = FIRST_STEP;
    loop {
        if let Some(v) = cond().ready() {
            return Some(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(step.min(deadline - now));
        step = (step * 2).min(MAX_STEP);
    }
}

/// [`poll_until`], panicking with `what` (formatted only then, so it may carry a log) when
/// the condition did not hold within `timeout`.
pub fn wait_until<R: Ready>(
    timeout: Duration,
    what: impl Display,
    cond: impl FnMut() -> R,
) -> R::Value {
    poll_until(timeout, cond)
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// [`wait_until`] for async tests: sleeps on tokio's clock, so the runtime keeps running.
pub async fn wait_until_async<R: Ready>(
    timeout: Duration,
    what: impl Display,
    mut cond: impl FnMut() -> R,
) -> R::Value {
    let deadline = Instant::now() + timeout;
    let mut step = FIRST_STEP;
    loop {
        if let Some(v) = cond().ready() {
            return v;
        }
        let now = Instant::now();
        assert!(
            now < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(step.min(deadline - now)).await;
        step = (step * 2).min(MAX_STEP);
    }
}
