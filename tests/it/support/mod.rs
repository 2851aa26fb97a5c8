//! The integration-test harness: in-process origins (from the test kit), the ward process
//! fixture, policy builder, raw protocol clients and external-tool runners. Tests import from
//! here only.

pub mod chromium;
pub mod haproxy;
pub mod net;
pub mod origin;
pub mod policy;
pub mod secrets;
pub mod tinyproxy;
pub mod tools;
pub mod ward;

pub use origin::{Blackhole, origins, refused_port};
pub use policy::Policy;
pub use testkit::pki::client_config_trusting;
pub use testkit::{wait_until, ws};
pub use tools::{curl, curl_index_via, have};
pub use ward::Ward;
