//! `synvault dump`: a point, or a path of it, as a tar stream on standard output.

use std::io::{IsTerminal, Write};
use std::os::fd::AsFd;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};
use synvault::{BlockReader, DumpError, Error, PointReader};

use super::filters::FilterArgs;
use super::{split_point_path, Cli};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  synvault dump latest | tar x -C /tmp/restored
  synvault dump latest~1:etc --source /etc | ssh host tar x --xattrs --acls -C /srv/etc
  synvault dump 3f2a9c1e > point.tar

Members carry owners (numbers), modes, ns mtimes, xattrs and ACLs (PAX records), symlinks,
hardlinks, devices and FIFOs; holes stay holes (GNU sparse 1.0). As root, `tar x --same-owner
-p --xattrs --xattrs-include='*' --acls` makes what restore makes. A reader that goes away
ends the dump with exit code 141.")]
pub struct DumpArgs {
    /// POINT[:PATH]: a point, or a directory or file in it.
    target: String,
    #[command(flatten)]
    filters: FilterArgs,
    /// The stream's format.
    #[arg(long, value_enum, default_value_t = Format::Tar)]
    format: Format,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    /// POSIX tar with PAX extended headers, as GNU tar's --format=pax writes it.
    Tar,
}

pub fn run(cli: &Cli, args: &DumpArgs) -> anyhow::Result<u8> {
    let stdout = std::io::stdout();
    if stdout.is_terminal() {
        return Err(Error::InvalidArgument(
            "standard output is a terminal: redirect it to a file or pipe it to tar".into(),
        )
        .into());
    }
    let vault = cli.open_vault()?;
    let (query, path) = split_point_path(&args.target);
    let point = vault.select_point(query, &args.filters.filter())?;
    let reader = PointReader::new(&vault, point, Arc::new(BlockReader::new(&vault)?));
    // Straight to the descriptor: the stream is not lines, so `Stdout`'s line buffer would
    // only split its writes.
    let fd = stdout
        .as_fd()
        .try_clone_to_owned()
        .context("cannot use standard output")?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::from(fd));
    let written = match args.format {
        Format::Tar => synvault::dump_tar(&reader, path.as_bytes(), &mut out),
    }
    .and_then(|()| out.flush().map_err(DumpError::Output));
    match written {
        Ok(()) => Ok(synvault::exit::SUCCESS),
        // The reader went away: nothing to say, but the stream is not whole.
        Err(DumpError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            Ok(synvault::exit::OUTPUT_CLOSED)
        }
        Err(DumpError::Output(e)) => Err(e).context("cannot write the tar stream"),
        Err(DumpError::Read(e)) => Err(e.into()),
        Err(damaged @ DumpError::Damaged { .. }) => Err(damaged.into()),
    }
}
