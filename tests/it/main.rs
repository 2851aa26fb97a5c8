//! ward's integration tests: the real binary, real clients (curl, openssl, Python, Chromium,
//! tinyproxy, a second ward), real TLS origins on loopback. One module per area; the harness
//! lives in support/ and is itself tested in harness.rs.
// These time real processes and real sockets, where tokio's pausable clock has no say.
#![allow(clippy::disallowed_types)]

mod support;

mod admin_auth;
mod chain;
mod cli;
mod clients;
mod deploy;
mod deploy_files;
mod ech;
mod errors;
mod faults;
mod flows_file;
mod flows_view;
mod har;
mod harness;
mod hostile;
mod hostile_wire;
mod http_proxy;
mod inspect;
mod inspect_clients;
mod inspect_policy;
mod ja4;
mod lifecycle;
mod listeners;
mod lists;
mod mirror;
mod onboarding;
mod ops;
mod pinning;
mod requests;
mod secrets;
mod shares;
mod socks;
mod supervision;
mod tls_policy;
