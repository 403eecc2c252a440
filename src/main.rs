//! The `synvault` binary: parse arguments, run the command, print the error, exit with its code.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run() {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("synvault: {err:#}");
            let code = err
                .chain()
                .find_map(|cause| cause.downcast_ref::<synvault::Error>())
                .map_or(synvault::exit::FATAL, synvault::Error::exit_code);
            ExitCode::from(code)
        }
    }
}
