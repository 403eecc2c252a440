//! Where a passphrase comes from: a file, a command, or a prompt on the terminal. The order
//! in which the sources are tried is `Cli::passphrase`'s (and `key add`'s for a new one).

use std::io::IsTerminal;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{anyhow, Context};
use synvault::Error;

/// How often a passphrase and its confirmation may differ before the command gives up.
const CONFIRM_ATTEMPTS: usize = 3;

/// The first line of FILE (without its line end).
pub fn from_file(file: &Path) -> anyhow::Result<Vec<u8>> {
    let text = std::fs::read(file)
        .with_context(|| format!("cannot read password file {}", file.display()))?;
    Ok(first_line(&text).to_vec())
}

/// The first line `sh -c COMMAND` prints. The command shares our terminal (standard input
/// and error), so it can ask for what it needs, as `pass` or `gpg` do. It is not named in the
/// errors: its text may hold what it looks up.
pub fn from_command(command: &str) -> anyhow::Result<Vec<u8>> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::inherit())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run the password command")?;
    if !out.status.success() {
        return Err(anyhow!("the password command failed ({})", out.status));
    }
    let line = first_line(&out.stdout);
    if line.is_empty() {
        return Err(anyhow!("the password command printed no passphrase"));
    }
    Ok(line.to_vec())
}

/// True if a prompt can be answered: standard input is a terminal.
pub fn on_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// Asks once on the terminal.
pub fn prompt(label: &str) -> anyhow::Result<Vec<u8>> {
    let answer = rpassword::prompt_password(label).context("cannot read passphrase")?;
    Ok(answer.into_bytes())
}

/// Asks twice on the terminal; after a mismatch says so and asks again, a few times.
pub fn prompt_confirmed(label: &str) -> anyhow::Result<Vec<u8>> {
    for attempt in 1..=CONFIRM_ATTEMPTS {
        let first = prompt(label)?;
        if first == prompt("again: ")? {
            return Ok(first);
        }
        if attempt < CONFIRM_ATTEMPTS {
            eprintln!("the passphrases differ; try again");
        }
    }
    Err(anyhow!(Error::InvalidArgument(format!(
        "the passphrases differed {CONFIRM_ATTEMPTS} times"
    ))))
}

/// Everything before the first line end (`\n` or `\r\n`).
fn first_line(text: &[u8]) -> &[u8] {
    let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_is_the_passphrase() {
        assert_eq!(first_line(b"pw\r\nrest\n"), b"pw");
        assert_eq!(first_line(b"pw"), b"pw");
        assert_eq!(first_line(b"\nsecond"), b"");
    }
}
