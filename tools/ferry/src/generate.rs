//! Shell completion scripts and man pages, rendered from the clap definitions in
//! [`crate::commands`].

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap_complete::Shell;

use crate::commands;

/// Writes the `shell` completion script of `command` (`ferry` or `ferry-TOOL`) to `out`.
pub fn completions(shell: Shell, command: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut cmd = commands::by_name(command)
        .with_context(|| format!("no such command {command:?} to complete"))?;
    // Rendered in memory first: clap_complete panics on a write error (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, command, &mut script);
    out.write_all(&script)
        .context("cannot write the completion script")?;
    Ok(())
}

/// Writes `ferry.1`, `ferry-completions.1` and `ferry-TOOL.1` for every tool into `dir` (created if
/// missing); returns the files written.
pub fn man_pages(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let completions = commands::ferry()
        .find_subcommand("completions")
        .cloned()
        .context("ferry has a completions subcommand")?;
    let pages = [
        ("ferry".to_owned(), commands::ferry()),
        // ferry.1 lists it as ferry-completions(1).
        (
            "ferry-completions".to_owned(),
            completions
                .name("ferry-completions")
                .bin_name("ferry completions"),
        ),
    ]
    .into_iter()
    .chain(
        commands::tools()
            .into_iter()
            .map(|(name, cmd)| (format!("ferry-{name}"), cmd)),
    );
    let mut written = Vec::new();
    for (name, cmd) in pages {
        let path = dir.join(format!("{name}.1"));
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd)
            .render(&mut page)
            .with_context(|| format!("cannot render the man page of {name}"))?;
        std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}
