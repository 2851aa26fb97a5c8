//! The integration-test harness: in-process origins, the ward process fixture, policy
//! builder, raw protocol clients and external-tool runners. Tests import from here only.

pub mod chromium;
pub mod net;
pub mod origin;
pub mod pki;
pub mod policy;
pub mod tinyproxy;
pub mod tools;
pub mod ward;
pub mod ws;

pub use origin::{Blackhole, origins, refused_port};
pub use policy::Policy;
pub use tools::{curl, have};
pub use ward::Ward;
