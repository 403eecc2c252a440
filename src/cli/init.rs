//! `synvault init`.

use clap::Args;
use synvault::{CreateOptions, Vault};

use super::Cli;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  synvault --vault /srv/vault init
  SYNVAULT_VAULT=/srv/vault synvault init --password-file ~/.synvault-pass
  synvault --vault s3://backups/host1 --endpoint http://127.0.0.1:9000 init")]
pub struct InitArgs {}

pub fn run(cli: &Cli, _args: &InitArgs) -> anyhow::Result<u8> {
    let place = cli.place()?;
    let pass = cli.passphrase(true)?;
    let vault = Vault::create_in(place, &pass, CreateOptions::default())?;
    outln!(
        "created vault {} at {}",
        vault.config().vault_id,
        vault.place().location()
    );
    if vault.place().remote().is_some() {
        outln!("its catalog is kept in {}", vault.root().display());
    }
    outln!("keep the passphrase safe: without it the data cannot be read");
    Ok(synvault::exit::SUCCESS)
}
