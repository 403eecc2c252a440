//! Output helpers: the one way to write standard output, sizes for people, JSON for scripts.
//! What goes to standard error (progress, notes, warnings) is `console`'s.
//!
//! Commands print with `outln!` (defined in `cli/mod.rs`) instead of `println!`, which panics when
//! standard output is a closed pipe (`synvault ls latest | head`) or a full disk. A failed
//! write is a [`StdoutError`]: `main` ends quietly on a closed pipe, the way Unix tools do, and
//! prints one line for any other write error.

use std::fmt;
use std::io::Write;

/// `1.5 GiB`-style sizes.
pub fn bytes(n: u64) -> String {
    synvault::units::Bytes(n).to_string()
}

/// Standard output could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write to standard output")]
pub struct StdoutError(#[source] pub std::io::Error);

impl StdoutError {
    /// True when the reader went away (EPIPE): not an error worth a message.
    pub fn is_closed_pipe(&self) -> bool {
        self.0.kind() == std::io::ErrorKind::BrokenPipe
    }
}

/// Writes one formatted line to standard output.
pub fn write_line(args: fmt::Arguments<'_>) -> Result<(), StdoutError> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .map_err(StdoutError)
}

/// Writes raw bytes to standard output.
pub fn write_bytes(bytes: &[u8]) -> Result<(), StdoutError> {
    std::io::stdout()
        .lock()
        .write_all(bytes)
        .map_err(StdoutError)
}

/// Flushes standard output; `main` calls it once at the end, so a full disk is reported.
pub fn flush() -> Result<(), StdoutError> {
    std::io::stdout().lock().flush().map_err(StdoutError)
}

/// The exit code of a command whose work is done, once its report is printed: a reader that
/// went away (EPIPE) does not change the outcome, say of a backup that committed its point.
pub fn after_report(code: u8, printed: anyhow::Result<()>) -> anyhow::Result<u8> {
    match printed {
        Err(err)
            if err
                .downcast_ref::<StdoutError>()
                .is_some_and(StdoutError::is_closed_pipe) =>
        {
            Ok(code)
        }
        Err(err) => Err(err),
        Ok(()) => Ok(code),
    }
}

/// The short form of a recovery point id for people: its first 8 characters, or all of it.
pub fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// Prints one JSON document.
pub fn json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
