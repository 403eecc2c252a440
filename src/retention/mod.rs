//! Retention: which recovery points a vault keeps.
//!
//! Owns the evaluation of a keep policy (restic's `forget` rules plus synvault's per-point
//! protection) over a list of points: [`policy::decide`] is pure — no I/O, no catalog, no
//! clock — so plans are tested without a disk. The forget and prune flows (turning decisions
//! into a plan, applying it to the catalog and store) will live beside it in this module; the
//! policy code must not grow any of that.

mod calendar;
mod limit;
pub mod policy;
mod rule;

pub use policy::{decide, Decision, Keep, PointInfo, Policy, Span, NOT_REMOVABLE};
