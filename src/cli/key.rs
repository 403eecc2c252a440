//! `synvault key list | add | remove | passwd`: the passphrases that open the vault, each a
//! key file wrapping the same master key (see `synvault::keys`).

use std::path::PathBuf;

use anyhow::anyhow;
use clap::{Args, Subcommand};
use synvault::keys::{self, KeyInfo};
use synvault::KdfParams;
use synvault::{exit, Error};

use super::output::json;
use super::{passphrase, Cli};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  synvault key list
  synvault key add --new-password-file ~/.synvault-pass-2")]
pub struct KeyArgs {
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// List the keys (one per passphrase); `*` marks the one whose passphrase was given.
    #[command(after_help = "Examples:
  synvault key list
  synvault key list --json")]
    List {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add a passphrase: a new key wrapping the same master key.
    #[command(after_help = "Examples:
  synvault key add
  synvault key add --new-password-file ~/.synvault-pass-2")]
    Add(NewPassphraseArgs),
    /// Remove a key by id or id prefix. The vault's last key is never removed, nor the one
    /// whose passphrase was given (open with another, or use `key passwd`).
    #[command(after_help = "Example:
  synvault key remove 5e0c7a21 --password-file ~/.synvault-pass-2")]
    Remove {
        /// The key's id, or a prefix of exactly one.
        id: String,
    },
    /// Change the passphrase given: add a key for the new one, then remove the one in use.
    #[command(after_help = "Examples:
  synvault key passwd
  synvault key passwd --password-file old.txt --new-password-file new.txt")]
    Passwd(NewPassphraseArgs),
}

#[derive(Debug, Args)]
struct NewPassphraseArgs {
    /// Read the new passphrase from FILE (its first line); without it, SYNVAULT_NEW_PASSWORD,
    /// then a prompt (twice) on a terminal.
    #[arg(long, value_name = "FILE")]
    new_password_file: Option<PathBuf>,
}

impl NewPassphraseArgs {
    fn new_passphrase(&self) -> anyhow::Result<Vec<u8>> {
        if let Some(file) = &self.new_password_file {
            return passphrase::from_file(file);
        }
        if let Some(pw) = std::env::var_os("SYNVAULT_NEW_PASSWORD") {
            return Ok(pw.into_encoded_bytes());
        }
        if !passphrase::on_terminal() {
            return Err(anyhow!(Error::InvalidArgument(
                "no new passphrase: use --new-password-file FILE, SYNVAULT_NEW_PASSWORD, or run on a terminal"
                    .into()
            )));
        }
        passphrase::prompt_confirmed("new passphrase: ")
    }
}

pub fn run(cli: &Cli, args: &KeyArgs) -> anyhow::Result<u8> {
    let vault = cli.open_vault()?;
    match &args.command {
        KeyCommand::List { json: as_json } => {
            let keys = keys::list(&vault)?;
            if *as_json {
                json(&keys)?;
            } else {
                print_keys(&keys)?;
            }
        }
        KeyCommand::Add(new) => {
            let pass = new.new_passphrase()?;
            let lock = cli.lock_writer(&vault, "key add")?;
            let id = keys::add(&vault, &lock, &pass, KdfParams::DEFAULT)?;
            outln!("added key {id}");
        }
        KeyCommand::Remove { id } => {
            let lock = cli.lock_writer(&vault, "key remove")?;
            let removed = keys::remove(&vault, &lock, id)?;
            outln!("removed key {removed}");
        }
        KeyCommand::Passwd(new) => {
            let pass = new.new_passphrase()?;
            let lock = cli.lock_writer(&vault, "key passwd")?;
            let id = keys::change_passphrase(&vault, &lock, &pass, KdfParams::DEFAULT)?;
            outln!(
                "changed the passphrase: key {id} replaces key {}",
                vault.key_id()
            );
        }
    }
    Ok(exit::SUCCESS)
}

fn print_keys(keys: &[KeyInfo]) -> anyhow::Result<()> {
    let unknown = || "-".to_string();
    outln!(
        "  {:<16}  {:<20}  {:<12}  host",
        "id",
        "created (UTC)",
        "user"
    );
    for key in keys {
        outln!(
            "{} {:<16}  {:<20}  {:<12}  {}",
            if key.current { '*' } else { ' ' },
            key.id,
            key.created.clone().unwrap_or_else(unknown),
            key.user.clone().unwrap_or_else(unknown),
            key.host.clone().unwrap_or_else(unknown)
        );
    }
    Ok(())
}
