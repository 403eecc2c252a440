//! Progress reporting seam: the library counts, the CLI draws (indicatif), tests ignore it.

/// Receives progress of a long operation. Called from many threads.
pub trait Progress: Sync {
    /// The total bytes the operation expects to process, once known.
    fn set_total(&self, _bytes: u64) {}
    /// True if the total is shown to someone: worth a walk of its own where it costs one
    /// (a backup counts its source beside the walk that reads it).
    fn shows_total(&self) -> bool {
        false
    }
    /// `n` more bytes processed.
    fn add_bytes(&self, _n: u64) {}
    /// One more file processed.
    fn add_file(&self) {}
}

/// Reports nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}
