//! Test doubles shared by the unit tests. Transport code lives here rather than next to the
//! tests that use it, so domain modules (payments, …) import nothing from actix even in
//! their tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod fake_rpc;
