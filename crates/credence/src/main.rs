//! The `credence` binary: the server and the operator's commands.

/// mimalloc rather than glibc's malloc: per-thread free lists, so the
/// runtime's worker threads stop contending on the allocator's arenas
/// (README, "The broker", for what it changed).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    credence::cli::main()
}
