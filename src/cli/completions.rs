//! `drplan completions SHELL` and `drplan man`: generated at run time from
//! the clap definition, so they always match the binary (subcommands added
//! later are never missing, and nothing committed can go stale).

use std::path::PathBuf;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::{Cli, Exit, emit};

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write drplan.1 and one page per subcommand (drplan-run.1, ...) into
    /// DIR (created if missing) instead of printing drplan.1 to stdout.
    #[arg(short, long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

pub fn completions(args: &CompletionsArgs) -> Exit {
    let mut cmd = Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "drplan", &mut buf);
    match String::from_utf8(buf) {
        Ok(text) => emit(&text),
        Err(e) => {
            eprintln!("drplan: the completion script is not UTF-8: {e}");
            Exit::CouldNotRun
        }
    }
}

pub fn man(args: &ManArgs) -> Exit {
    let cmd = Cli::command();
    match &args.out {
        None => {
            let mut buf = Vec::new();
            if let Err(e) = clap_mangen::Man::new(cmd).render(&mut buf) {
                eprintln!("drplan: cannot render the man page: {e}");
                return Exit::CouldNotRun;
            }
            emit(&String::from_utf8_lossy(&buf))
        }
        Some(dir) => {
            if let Err(e) = std::fs::create_dir_all(dir) {
                eprintln!("drplan: cannot create `{}`: {e}", dir.display());
                return Exit::CouldNotRun;
            }
            match clap_mangen::generate_to(cmd, dir) {
                Ok(()) => {
                    eprintln!("drplan: man pages written to `{}`", dir.display());
                    Exit::Ok
                }
                Err(e) => {
                    eprintln!(
                        "drplan: cannot write the man pages into `{}`: {e}",
                        dir.display()
                    );
                    Exit::CouldNotRun
                }
            }
        }
    }
}
