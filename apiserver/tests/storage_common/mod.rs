//! Shared by the storage tests and benchmark.
#![allow(dead_code)]

pub mod conformance;
pub mod etcd_fixture;
