//! `kioku`: the command-line face of the library. Every command is a thin
//! wrapper; errors print as one line on stderr with a non-zero exit code.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    kioku::device::fix_cpu_threads();
    match cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
