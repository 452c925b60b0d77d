//! Integration tests of the `natter` server through its public HTTP API,
//! each against a real server on port 0 with a fresh database (see
//! `natter-testkit`; `NATTER_TEST_BACKEND=postgres` runs them on
//! PostgreSQL).

mod accounts;
mod blocks;
mod cli;
mod cluster;
mod contacts;
mod conversations;
mod durability;
mod errors;
mod messages;
mod ops;
mod realtime;
mod web;
mod xmpp;
