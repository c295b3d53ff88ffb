//! Integration tests: one binary (every extra one re-links DataFusion). Each test starts a
//! real server on an ephemeral loopback port, or the real `convoscope` binary, and speaks
//! HTTP to it.

mod cluster;
mod collector;
mod common;
mod crash;
mod demo;
mod disk;
mod experiment_table;
mod experiments;
mod governance;
mod hostile;
mod isolation;
mod providers;
mod reference;
mod reports;
mod send;
mod service;
mod tenants;
