//! `synvault init`.

use clap::Args;
use synvault::{CreateOptions, Vault};

use super::Cli;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  synvault --vault /srv/vault init
  SYNVAULT_VAULT=/srv/vault synvault init --password-file ~/.synvault-pass")]
pub struct InitArgs {}

pub fn run(cli: &Cli, _args: &InitArgs) -> anyhow::Result<u8> {
    let dir = cli.vault_dir()?;
    let pass = cli.passphrase(true)?;
    let vault = Vault::create(dir, &pass, CreateOptions::default())?;
    outln!(
        "created vault {} at {}",
        vault.config().vault_id,
        dir.display()
    );
    outln!("keep the passphrase safe: without it the data cannot be read");
    Ok(synvault::exit::SUCCESS)
}
