//! Built-in demo factories and the `aimarket-hub demo` command.
//!
//! A [`DemoFactory`] is a real, small provider server (actix-web on loopback) with its own
//! Ed25519 key. It publishes a signed well-known document and a signed v2 manifest of a few
//! dozen capabilities, answers invokes on the v2 hub path, the v1 factory path and the
//! provider-contract path with deterministic results computed from the input, asks for
//! payment on priced capabilities (402 with the v1 `X-Payment-Required` and x402
//! `PAYMENT-REQUIRED` headers), accepts demo payments (a channel opened at the factory with
//! a `demo…` transaction hash, or `X-Payment` with a demo transaction hash) and signs a v1
//! receipt and the request-bound `X-Provider-Signature` (spec §7.1) on every answer.
//!
//! Three catalogs are built in ([`FactorySpec::polyglot_works`], [`FactorySpec::atlas_data`],
//! [`FactorySpec::pixel_forge`]). Tests start them as fixtures; [`run`] wires them to a hub
//! for the `demo` command.
//!
//! Modules: [`spec`] (the declarative types), `catalogs` (the three catalogs and their
//! computations), `server` (HTTP), `payment` (the factory's own tiny ledger), [`run`]
//! (the demo command's orchestration and printed walkthrough).

mod catalogs;
mod payment;
pub mod run;
mod server;
pub mod spec;

#[cfg(test)]
mod tests;

pub use server::{DemoFactory, FactoryError};
pub use spec::{CapabilitySpec, FactorySpec, Op};
