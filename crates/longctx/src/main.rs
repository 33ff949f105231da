//! The `longctx` command line: a thin layer over the library crates.

mod cli;
mod commands;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LONGCTX_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        cli::Command::Run(args) => commands::run::run(&args),
        cli::Command::Judge(args) => commands::run::judge(&args),
        cli::Command::Prompt(args) => commands::prompt::run(&args),
        cli::Command::Report(args) => commands::report::run(&args),
        cli::Command::Serve(args) => longctx_serve::run(&args).map_err(anyhow::Error::from),
        cli::Command::Score(args) => commands::score::run(&args),
        cli::Command::Datasets(args) => commands::datasets::run(&args),
        cli::Command::Perplexity(args) => commands::perplexity::run(&args),
        cli::Command::Generate(args) => commands::generate::run(&args),
        cli::Command::Embed(args) => commands::retrieval::embed(&args),
        cli::Command::Retrieve(args) => commands::retrieval::retrieve(&args),
        cli::Command::Compress(args) => commands::retrieval::compress(&args),
        cli::Command::Train(args) => commands::train::train(&args),
        cli::Command::Loss(args) => commands::train::loss(&args),
        cli::Command::Merge(args) => commands::train::merge(&args),
        cli::Command::Bench(cli::BenchCommand::Generate(args)) => commands::bench::generate_bench(&args),
        cli::Command::Bench(cli::BenchCommand::Embed(args)) => commands::retrieval::bench_embed(&args),
        cli::Command::Bench(cli::BenchCommand::Train(args)) => commands::bench::train_bench(&args),
        cli::Command::Bench(cli::BenchCommand::Serve(args)) => commands::bench::serve_bench(&args),
        cli::Command::Ruler(cli::RulerCommand::Generate(args)) => commands::ruler::generate(&args),
        cli::Command::Plan(cli::PlanCommand::Train(args)) => commands::plan::train(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // A closed pipe (`longctx score … | head`) is not a failure.
            if err.chain().any(|e| {
                e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "error: {err:#}");
            ExitCode::from(2)
        }
    }
}
