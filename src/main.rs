//! The `opensyncd` binary: parse arguments, run, map the outcome to an exit code.
//! Everything else lives in the library (`opensyncd::cli`).

fn main() -> std::process::ExitCode {
    let cli = opensyncd::cli::parse();
    match opensyncd::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("opensyncd: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
