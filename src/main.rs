//! The `opensyncd` binary: parse arguments, run, map the outcome to an exit code.
//! Everything else lives in the library (`opensyncd::cli`).

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = opensyncd::cli::Cli::parse();
    match opensyncd::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("opensyncd: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
