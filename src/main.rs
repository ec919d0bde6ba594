//! The `opensyncd` binary: parse arguments, run, map the outcome to an exit code.
//! Everything else lives in the library (`opensyncd::cli`).

fn main() -> std::process::ExitCode {
    let cli = opensyncd::cli::parse();
    match opensyncd::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // A state reported with its own exit status (`status`): already printed.
        Err(err) if err.downcast_ref::<opensyncd::cli::Exit>().is_some() => {
            let code = err
                .downcast_ref::<opensyncd::cli::Exit>()
                .map_or(1, |e| e.0);
            std::process::ExitCode::from(code)
        }
        Err(err) => {
            eprintln!("opensyncd: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
