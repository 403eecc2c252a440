//! Retention: which recovery points a vault keeps.
//!
//! Owns the evaluation of a keep policy (restic's `forget` rules plus synvault's per-point
//! protection) over a list of points: [`policy::decide`] is pure — no I/O, no catalog, no
//! clock — so plans are tested without a disk. [`prune`] gives back the space of blocks no
//! point uses; the forget flow (decisions applied to the catalog) lives beside them.

mod calendar;
pub mod forget;
mod limit;
pub mod policy;
pub mod prune;
mod rule;
pub mod settings;

pub use policy::{decide, Decision, Keep, PointInfo, Policy, Span, NOT_REMOVABLE};
