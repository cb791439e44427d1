//! ferry: git-style umbrella command. `ferry TOOL ARGS…` runs `ferry-TOOL ARGS…`,
//! found next to this executable first, then on `PATH`; `ferry push images …`
//! (bmctl's spelling) runs `ferry-push …`. `ferry --help` lists the tools that
//! are installed. Its own commands only print what the tools' clap definitions
//! say: `ferry completions SHELL [COMMAND]` and, for packaging,
//! `ferry generate-man DIR`.

mod commands;
mod generate;

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::Context;
use ferry_cli::Outcome;

fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        dirs.push(dir);
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let file = format!("ferry-{name}");
    search_dirs()
        .into_iter()
        .map(|d| d.join(&file))
        .find(|p| p.is_file())
}

fn help() -> String {
    let mut s = String::from(
        "ferry: move container images across an air gap and prove they arrived intact.\n\n\
         Usage: ferry <TOOL> [ARGS...]    (runs ferry-<TOOL> [ARGS...])\n\nInstalled tools:\n",
    );
    let mut any = false;
    for (name, tool) in commands::tools() {
        if find_tool(name).is_some() {
            let about = tool.get_about().map(|a| a.to_string()).unwrap_or_default();
            s.push_str(&format!("  {name:<8} {about}\n"));
            any = true;
        }
    }
    if !any {
        s.push_str("  (none found next to ferry or on PATH)\n");
    }
    s.push_str(
        "\nAlso:\n  completions SHELL [COMMAND]   print a bash, zsh or fish completion script\n\
         \x20 push images ...               the same as push (bmctl's spelling)\n\n\
         Example:\n  ferry export --source bmpackages_1.30.0.tar.xz --to /media/usb/ferry-store\n\n\
         Run `ferry help <TOOL>` or `ferry <TOOL> --help` for a tool's options\n\
         and exit codes (0 ok, 1 findings, 2 error, 130 interrupted).\n",
    );
    s
}

/// `ferry completions …` and `ferry generate-man …`, parsed with the umbrella's
/// clap definition.
fn own_command(args: Vec<OsString>) -> anyhow::Result<Outcome> {
    let matches = commands::ferry_with_hidden()
        .try_get_matches_from(std::iter::once(OsString::from("ferry")).chain(args))
        .unwrap_or_else(|e| e.exit());
    match matches.subcommand() {
        Some(("completions", m)) => {
            let shell = *m
                .get_one::<clap_complete::Shell>("shell")
                .context("SHELL is required")?;
            let command = m
                .get_one::<String>("command")
                .context("COMMAND has a default")?;
            generate::completions(shell, command, &mut std::io::stdout().lock())?;
        }
        Some((commands::GENERATE_MAN, m)) => {
            let dir = m.get_one::<PathBuf>("dir").context("DIR is required")?;
            for page in generate::man_pages(dir)? {
                println!("{}", page.display());
            }
        }
        _ => anyhow::bail!("not a command of ferry itself"),
    }
    Ok(Outcome::Clean)
}

/// A tool name given as `export` or `ferry-export`.
fn args_tool_name(arg: &std::ffi::OsStr) -> String {
    let name = arg.to_string_lossy();
    name.strip_prefix("ferry-").unwrap_or(&name).to_owned()
}

fn main() -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let Some(first) = args.first().and_then(|a| a.to_str()).map(str::to_owned) else {
        eprint!("{}", help());
        return ExitCode::from(2);
    };
    // Write errors on stdout (a pipe closed early, `ferry --help | head -1`) end quietly.
    let mut out = std::io::stdout();
    match first.as_str() {
        "-h" | "--help" => {
            let _ = write!(out, "{}", help());
            return ExitCode::SUCCESS;
        }
        "help" if args.len() == 1 => {
            let _ = write!(out, "{}", help());
            return ExitCode::SUCCESS;
        }
        "-V" | "--version" => {
            let _ = writeln!(out, "ferry {}", ferry_cli::VERSION);
            return ExitCode::SUCCESS;
        }
        "completions" | commands::GENERATE_MAN => {
            return ferry_cli::run("ferry", || own_command(args));
        }
        _ => {}
    }
    args.remove(0);
    // `ferry help TOOL` is `ferry TOOL --help`.
    let first = if first == "help" {
        let name = args_tool_name(&args.remove(0));
        args = vec![OsString::from("--help")];
        name
    } else {
        first
    };
    if first == "push" && args.first().and_then(|a| a.to_str()) == Some(commands::PUSH_ALIAS) {
        args.remove(0);
    }
    let Some(tool) = find_tool(&first) else {
        eprintln!(
            "ferry: no such tool {first:?} (looked for ferry-{first} next to ferry and on PATH)\n"
        );
        eprint!("{}", help());
        return ExitCode::from(2);
    };
    let err = Command::new(&tool).args(&args).exec();
    eprintln!("ferry: cannot run {}: {err}", tool.display());
    ExitCode::from(2)
}
