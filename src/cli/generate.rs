//! `synvault completion` and `synvault man`: shell completions and man pages made from the
//! clap definitions at run time, so they never drift from the commands they describe.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Command, CommandFactory};
use clap_mangen::Man;
use synvault::{exit, Error};

use super::output::write_bytes;
use super::Cli;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  synvault completion bash > ~/.local/share/bash-completion/completions/synvault
  synvault completion zsh > ~/.zfunc/_synvault
  synvault completion fish > ~/.config/fish/completions/synvault.fish")]
pub struct CompletionArgs {
    /// The shell to complete for.
    shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  synvault man | man -l -
  synvault man seed import | man -l -
  synvault man --dir /usr/local/share/man/man1")]
pub struct ManArgs {
    /// The command whose page to print (`backup`, `seed import`, …); default: synvault's own.
    command: Vec<String>,
    /// Write every page (synvault.1, synvault-backup.1, …) into DIR instead.
    #[arg(long, value_name = "DIR", conflicts_with = "command")]
    dir: Option<PathBuf>,
}

/// Prints the completion script for a shell.
pub fn completion(args: &CompletionArgs) -> anyhow::Result<u8> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "synvault", &mut script);
    write_bytes(&script)?;
    Ok(exit::SUCCESS)
}

/// Prints one man page, or writes them all into a directory.
pub fn man(args: &ManArgs) -> anyhow::Result<u8> {
    // `help` is no command for a man page: each page already is the help.
    let mut synvault = Cli::command().disable_help_subcommand(true);
    synvault.build();
    if let Some(dir) = &args.dir {
        write_pages(&synvault, dir)
            .with_context(|| format!("cannot write man pages to {}", dir.display()))?;
        return Ok(exit::SUCCESS);
    }
    let mut command = &synvault;
    for name in &args.command {
        command = command.find_subcommand(name).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "no command `{}`: `synvault --help` lists them",
                args.command.join(" ")
            ))
        })?;
    }
    let mut roff = Vec::new();
    page(command).render(&mut roff)?;
    write_bytes(&roff)?;
    Ok(exit::SUCCESS)
}

/// The man page of a command (of a built tree: subcommands know their full names).
fn page(command: &Command) -> Man {
    Man::new(command.clone()).source(concat!("synvault ", env!("CARGO_PKG_VERSION")))
}

/// Writes the page of `command` and of each command below it into `dir`.
fn write_pages(command: &Command, dir: &Path) -> std::io::Result<()> {
    page(command).generate_to(dir)?;
    command
        .get_subcommands()
        .try_for_each(|sub| write_pages(sub, dir))
}
