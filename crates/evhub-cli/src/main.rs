//! `evhub`: produce, consume, inspect, check and benchmark event hubs on any evhub backend.
//!
//! The backend comes from `--config FILE`, `--url URL` or the `EVHUB_*` environment, exactly as
//! for services using the `evhub` crate. Run `evhub --help` for commands, examples and exit codes.

mod bench;
mod check;
mod cli;
mod consume;
mod dlq;
mod error;
mod hubs;
mod output;
mod pipe;
mod produce;
mod progress;
mod target;

use std::process::ExitCode;

use clap::error::ErrorKind as ClapErrorKind;
use clap::Parser;

use crate::cli::{Cli, Command};
use crate::error::{scrub, CliResult, EXIT_OK, EXIT_RUNTIME, EXIT_USAGE};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_exit(&e),
    };
    init_tracing();
    let mut secrets = target::early_secrets(cli.url.as_deref());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("evhub: error: io: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let result = runtime.block_on(run(&cli, &mut secrets));
    // Background client threads (librdkafka) must not delay the exit code.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) => {
            eprintln!("evhub: error: {}", scrub(&e.one_line(), &secrets));
            ExitCode::from(e.exit_code())
        }
    }
}

/// Help and version go to stdout with exit 0; parse errors become one `usage` line, exit 2.
fn clap_exit(e: &clap::Error) -> ExitCode {
    match e.kind() {
        ClapErrorKind::DisplayHelp
        | ClapErrorKind::DisplayVersion
        | ClapErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(EXIT_USAGE))
        }
        _ => {
            let rendered = e.render().to_string();
            let first = rendered
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("invalid arguments");
            let message = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("evhub: error: usage: {message} (see `evhub --help`)");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Logs go to stderr only when `RUST_LOG` asks for them.
fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
}

async fn run(cli: &Cli, secrets: &mut Vec<String>) -> CliResult {
    if let Command::Check(args) = &cli.command {
        if args.list {
            for (name, _) in evhub_conformance::CASES {
                println!("{name}");
            }
            return Ok(());
        }
    }
    // `pipe` names its two backends itself (--from, --to).
    if let Command::Pipe(args) = &cli.command {
        return pipe::run(args, secrets).await;
    }
    let config = target::load_config(cli)?;
    secrets.extend(target::config_secrets(&config));
    let hub = target::connect(&config).await?;
    match &cli.command {
        Command::Produce(args) => {
            let name = target::hub_name(cli, &config)?;
            produce::run(&hub, &name, args).await
        }
        Command::Consume(args) => {
            let name = target::hub_name(cli, &config)?;
            consume::run(&hub, &name, args).await
        }
        Command::Hubs(args) => hubs::run(cli, &config, &hub, args).await,
        Command::Check(args) => check::run(&config, &hub, args).await,
        Command::Bench(args) => bench::run(cli, &config, &hub, args).await,
        Command::Pipe(args) => pipe::run(args, secrets).await,
        Command::Dlq(args) => {
            let name = target::hub_name(cli, &config)?;
            dlq::run(&hub, &name, args, secrets).await
        }
    }
}
