//! The `synvault` binary: parse arguments, run the command, print the error, exit with its code.

mod cli;

use std::process::ExitCode;

use cli::output::StdoutError;

fn main() -> ExitCode {
    report_panics_in_one_line();
    // A reader gone at the last flush does not change the command's outcome either.
    let result = cli::run().and_then(|code| match cli::output::flush() {
        Err(err) if !err.is_closed_pipe() => Err(err.into()),
        _ => Ok(code),
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) if closed_pipe(&err) => ExitCode::from(synvault::exit::SUCCESS),
        Err(err) => {
            eprintln!("synvault: {err:#}");
            let code = err
                .chain()
                .find_map(cli::exit_code_of)
                .unwrap_or(synvault::exit::FATAL);
            ExitCode::from(code)
        }
    }
}

/// A reader of our standard output went away: stop quietly, as Unix tools do.
fn closed_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|cause| cause.downcast_ref::<StdoutError>())
        .any(StdoutError::is_closed_pipe)
}

/// A panic is a bug, but its text and backtrace are no message for a user: say it in one
/// line and exit with [`synvault::exit::INTERNAL`] (Rust's own code for a panic).
fn report_panics_in_one_line() {
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("synvault: internal error{place}: {what} (a bug: please report it)");
    }));
}
