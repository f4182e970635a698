//! The `credence` binary: the server and the operator's commands.

fn main() -> std::process::ExitCode {
    credence::cli::main()
}
