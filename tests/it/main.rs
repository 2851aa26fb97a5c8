//! ward's integration tests: the real binary, real clients (curl, Python, Chromium, tinyproxy,
//! a second ward), real TLS origins on loopback. One module per area; the harness in support/.

mod support;

mod harness;
