//! Integration tests of the crawler against real signed fake providers on 127.0.0.1.
#![allow(clippy::unwrap_used)]

mod bfs;
mod fetch;
mod support;
mod verify;
