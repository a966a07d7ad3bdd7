//! `corralctl`: see the `corral_cli` library.

fn main() -> std::process::ExitCode {
    corral_cli::main_with_args(std::env::args_os())
}
