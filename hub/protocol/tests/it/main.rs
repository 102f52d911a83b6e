//! Integration tests of `aimarket-protocol` against the normative vectors and CPython.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod canonical_vectors;
mod hub_request_vectors;
mod python;
mod python_canonicals;
mod python_json;
mod round_trips;
mod schema_docs;
mod signed_vectors;
mod support;
