//! The `synod` binary: `synod bench` (a local three-node cluster under load, against
//! the machine's limits), `synod serve` (one node), `synod dev` (a local three-node
//! cluster of `serve` processes), `synod keygen` (a key for `--key-file`), `synod sim`
//! (the deterministic simulator over many seeds), the WAL tools `synod wal
//! verify|dump|bench`, and the key-value client commands `synod
//! put|get|del|cas|scan|status` (`cli/kv.rs`). The command line and every subcommand
//! live in `cli/`; this file only dispatches and turns failures into exit statuses.
//!
//! Exit statuses: 0 on success and after `--help`; 2 for a bad command line (one line
//! on stderr); otherwise the subcommand's own (`bench`, `keygen`: 1 on failure;
//! `serve`: 1 for a refused start, 3 when a shard stops for good; `dev`: 1 when a node
//! fails; `sim`: 1 when a seed fails; `put|get|del|cas|scan|status`: as `cli/kv.rs`
//! lists them; `wal verify|dump`: 1 on corruption or a content violation, 2 when the
//! tool cannot run; `wal crash-child`: 3 on recovery corruption).

mod cli;

/// The binary's allocator. glibc's malloc let the three nodes' shard threads of a long
/// `synod bench` hold ever more free memory inside their arenas (RSS up, live bytes
/// flat); mimalloc gives freed pages back to the system.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use cli::wal::WalCommand;
use cli::Command;

fn main() -> ExitCode {
    cli::logging::init_logging();
    match cli::parse().command {
        Command::Bench(args) => status("synod", cli::bench::main(args), ExitCode::FAILURE),
        Command::Serve(args) => status("synod", cli::serve::main(*args), ExitCode::FAILURE),
        Command::Dev(args) => status("synod dev", cli::dev::main(args), ExitCode::FAILURE),
        Command::Keygen => status("synod", cli::keygen::main(), ExitCode::FAILURE),
        Command::Put(args) => status("synod", cli::kv::put(args), ExitCode::FAILURE),
        Command::Get(args) => status("synod", cli::kv::get(args), ExitCode::FAILURE),
        Command::Del(args) => status("synod", cli::kv::del(args), ExitCode::FAILURE),
        Command::Cas(args) => status("synod", cli::kv::cas(args), ExitCode::FAILURE),
        Command::Scan(args) => status("synod", cli::kv::scan(args), ExitCode::FAILURE),
        Command::Status(args) => status("synod", cli::kv::status(args), ExitCode::FAILURE),
        Command::Sim(args) => cli::sim::main(args),
        Command::Admin(args) => cli::admin::main(args),
        Command::Wal(wal) => {
            let result = match wal.command {
                WalCommand::Verify(args) => cli::wal::verify::main(args, false),
                WalCommand::Dump(args) => cli::wal::verify::main(args, true),
                WalCommand::Bench(args) => cli::wal::bench::main(args),
                WalCommand::CrashChild(args) => cli::wal::crash_child::main(args),
            };
            status("synod wal", result, ExitCode::from(cli::EXIT_USAGE))
        }
    }
}

/// The exit status of a subcommand: its own, or `failed` after `<prefix>: <why>` on
/// stderr.
fn status(prefix: &str, result: Result<ExitCode, String>, failed: ExitCode) -> ExitCode {
    result.unwrap_or_else(|why| {
        eprintln!("{prefix}: {why}");
        failed
    })
}
