//! Command-line parsing with help text that is safe to paste.
//!
//! clap re-wraps `after_help` to the terminal width (at most 100 columns), so
//! a long example command could be split with no `\`, and pasting it would run
//! a shorter command than shown (`--dry-run` alone on the next line). Here the
//! after-help (examples, notes, exit codes) is printed exactly as written:
//! example commands carry their own `\` continuations. The options above it
//! are still wrapped by clap.

use clap::{CommandFactory, Parser};

/// A tool's own help texts for the shared argument groups and its epilogue.
#[derive(Debug, Clone, Copy)]
pub struct ToolHelp {
    /// Printed verbatim after the options: examples, notes, exit codes.
    pub after_help: &'static str,
    /// Help of `--jobs` (what the workers are for this tool, and the default).
    pub jobs: &'static str,
    /// Help of `--json` (one document, or JSON lines).
    pub json: &'static str,
}

/// Parses the process arguments into `C`, with `help`'s texts; exits like
/// clap does on `--help`, `--version` and usage errors.
pub fn parse<C: Parser>(help: &ToolHelp) -> C {
    crate::exit::exit_quietly_on_closed_stdout();
    let mut cmd = command::<C>(help);
    let matches = match cmd.try_get_matches_from_mut(std::env::args_os()) {
        Ok(m) => m,
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => {
            let _ = e.print();
            print!("\n{}\n", help.after_help.trim_end());
            std::process::exit(0);
        }
        Err(e) => e.exit(),
    };
    C::from_arg_matches(&matches).unwrap_or_else(|e| e.with_cmd(&cmd).exit())
}

/// `C`'s command with the shared groups' help replaced by `help`'s.
pub fn command<C: CommandFactory>(help: &ToolHelp) -> clap::Command {
    let mut cmd = C::command();
    for (id, text) in [("jobs", help.jobs), ("json", help.json)] {
        if cmd.get_arguments().any(|a| a.get_id() == id) {
            cmd = cmd.mut_arg(id, |a| a.help(text));
        }
    }
    cmd
}
