//! Retention: which recovery points a vault keeps.
//!
//! Owns the evaluation of a keep policy (restic's `forget` rules plus synvault's per-point
//! protection). The forget and prune flows will live beside it in this module.

mod limit;

pub use limit::{Keep, Span};
