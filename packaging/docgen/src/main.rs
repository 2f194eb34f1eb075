//! `misp-guard-docgen OUT_DIR`: the man pages (`man/misp-guard.1` and one
//! per subcommand, `misp-guard-run.1`, …) and the bash, zsh and fish
//! completions of misp-guard, generated from the very clap definitions the
//! binary parses its arguments with (`src/cli.rs`, included below), so they
//! cannot drift from it. `debian/rules` runs it; nothing here is installed
//! but its output.

#[allow(dead_code)]
#[path = "../../../src/cli.rs"]
mod cli;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> ExitCode {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: misp-guard-docgen OUT_DIR");
        return ExitCode::from(2);
    };
    match generate(&out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("misp-guard-docgen: {}: {e}", out.display());
            ExitCode::FAILURE
        }
    }
}

fn generate(out: &Path) -> std::io::Result<()> {
    let mut cmd = cli::Cli::command();
    cmd.build();
    let man = out.join("man");
    std::fs::create_dir_all(&man)?;
    pages(&cmd, &man)?;
    let completions = out.join("completions");
    std::fs::create_dir_all(&completions)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, "misp-guard", &completions)?;
    }
    Ok(())
}

/// `cmd`'s page and, git-style, one page per subcommand
/// (`misp-guard-config-check.1`); clap's own `help` subcommands get none.
fn pages(cmd: &clap::Command, dir: &Path) -> std::io::Result<()> {
    let name = cmd.get_name().to_owned();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    std::fs::write(dir.join(format!("{name}.1")), page)?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        // clap takes names as &'static str (without its "string"
        // feature, which the guard's build does not need): this short run
        // leaks a few bytes per page.
        let full: &'static str = format!("{name}-{}", sub.get_name()).leak();
        let bin = format!("{} {}", cmd.get_bin_name().unwrap_or(&name), sub.get_name());
        pages(&sub.clone().name(full).bin_name(bin), dir)?;
    }
    Ok(())
}
