//! The clap definitions of `ferry` and of every tool it runs, taken from the
//! tools' own `Cli` structs: the one source of shell completions and man pages,
//! so that they always match what `--help` prints.

use clap::{Arg, Command, CommandFactory};

/// `(name, definition)` of every tool `ferry NAME` runs: `ferry-NAME`'s own
/// command line.
pub fn tools() -> Vec<(&'static str, Command)> {
    vec![
        (
            "export",
            tool_command::<ferry_export::cli::Cli>(&ferry_export::cli::HELP),
        ),
        (
            "verify",
            tool_command::<ferry_verify::cli::Cli>(&ferry_verify::cli::HELP),
        ),
        (
            "diff",
            tool_command::<ferry_diff::cli::Cli>(&ferry_diff::cli::HELP),
        ),
        (
            "push",
            tool_command::<ferry_push::cli::Cli>(&ferry_push::cli::HELP),
        ),
        (
            "pack",
            tool_command::<ferry_pack::cli::Cli>(&ferry_pack::cli::HELP),
        ),
        (
            "mirror-config",
            tool_command::<ferry_mirror_config::cli::Cli>(&ferry_mirror_config::cli::HELP),
        ),
    ]
}

/// A tool's command as its `--help` shows it: its own `--jobs`/`--json` help
/// and its epilogue (examples, notes, exit codes).
fn tool_command<C: CommandFactory>(help: &ferry_cli::ToolHelp) -> Command {
    ferry_cli::help::command::<C>(help).after_help(help.after_help)
}

/// The words `bmctl push images` puts between the tool and its flags:
/// `ferry push images …` runs `ferry-push …`.
pub const PUSH_ALIAS: &str = "images";

/// The umbrella `ferry`: one subcommand per tool (with the tool's own flags),
/// `push images` (bmctl's spelling of `push`) and `completions`.
pub fn ferry() -> Command {
    let mut ferry = Command::new("ferry")
        .version(ferry_cli::VERSION)
        .about("Move container images across an air gap and prove they arrived intact")
        .long_about(
            "Move container images across an air gap and prove they arrived intact.\n\n\
             `ferry TOOL ARGS…` runs `ferry-TOOL ARGS…`, found next to ferry first, then on PATH.",
        )
        .after_help(
            "Example:\n  ferry export --source bmpackages_1.30.0.tar.xz --to /media/usb/ferry-store\n\n\
             Run `ferry TOOL --help` for a tool's options and exit codes (0 ok, 1 findings, 2 error).",
        )
        .subcommand_required(true)
        .disable_help_subcommand(true);
    for (name, tool) in tools() {
        let mut sub = tool.name(name).bin_name(format!("ferry {name}"));
        if name == "push" {
            let images = tool_command::<ferry_push::cli::Cli>(&ferry_push::cli::HELP)
                .name(PUSH_ALIAS)
                .bin_name(format!("ferry push {PUSH_ALIAS}"))
                .about("The same as `ferry push` (as `bmctl push images` is spelled)");
            sub = sub.subcommand(images);
        }
        ferry = ferry.subcommand(sub);
    }
    ferry.subcommand(completions())
}

/// [`ferry`] with its hidden packaging subcommand, `generate-man`: what `ferry`
/// parses its own commands with (the completions and man pages leave it out).
pub fn ferry_with_hidden() -> Command {
    ferry().subcommand(generate_man())
}

/// The hidden subcommand that writes the man pages (for scripts/release.sh).
pub const GENERATE_MAN: &str = "generate-man";

/// Every command `ferry completions` and the man pages cover: `ferry`, then the
/// tools (the names of [`tools`]' definitions).
pub const COMMANDS: [&str; 7] = [
    "ferry",
    "ferry-export",
    "ferry-verify",
    "ferry-diff",
    "ferry-push",
    "ferry-pack",
    "ferry-mirror-config",
];

/// `ferry completions SHELL [COMMAND]`.
fn completions() -> Command {
    Command::new("completions")
        .about("Print the shell completion script for ferry or one of its tools")
        .after_help(
            "Examples:\n  source <(ferry completions bash)\n  \
             ferry completions zsh > ~/.zfunc/_ferry\n  \
             ferry completions fish ferry-push > ~/.config/fish/completions/ferry-push.fish\n\n\
             The .deb and .tar.gz already install the scripts of every command.",
        )
        .arg(
            Arg::new("shell")
                .value_name("SHELL")
                .help("The shell the script is for")
                .required(true)
                .value_parser(clap::value_parser!(clap_complete::Shell)),
        )
        .arg(
            Arg::new("command")
                .value_name("COMMAND")
                .help("The command to complete")
                .default_value("ferry")
                .value_parser(COMMANDS),
        )
}

/// `ferry generate-man DIR` (for scripts/release.sh): writes every man page into DIR.
fn generate_man() -> Command {
    Command::new(GENERATE_MAN)
        .about("Write the man pages of ferry and every tool (ferry.1, ferry-TOOL.1) into DIR")
        .arg(
            Arg::new("dir")
                .value_name("DIR")
                .required(true)
                .value_parser(clap::value_parser!(std::path::PathBuf)),
        )
}

/// The standalone definition of the command named `name` (`ferry` or
/// `ferry-TOOL`), as its binary parses it.
pub fn by_name(name: &str) -> Option<Command> {
    if name == "ferry" {
        return Some(ferry());
    }
    tools()
        .into_iter()
        .find(|(tool, _)| name.strip_prefix("ferry-") == Some(*tool))
        .map(|(_, command)| command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_name_every_tool_definition() {
        let names: Vec<String> = tools()
            .iter()
            .map(|(_, cmd)| cmd.get_name().to_owned())
            .collect();
        assert_eq!(COMMANDS[0], "ferry");
        assert_eq!(&COMMANDS[1..], names.as_slice());
        for (name, cmd) in tools() {
            assert_eq!(cmd.get_name(), format!("ferry-{name}"));
        }
    }

    #[test]
    fn definitions_are_valid() {
        ferry().debug_assert();
        for name in COMMANDS {
            by_name(name)
                .expect("every command has a definition")
                .debug_assert();
        }
    }
}
