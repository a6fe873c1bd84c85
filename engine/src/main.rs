//! The `sluice` binary: parses the command line, sets up logging, runs the command, and
//! turns the outcome into an exit code. The only place errors become exit codes.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use sluice::cli::{Cli, Command, LogFormat, execute};
use sluice::error::ErrorClass;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo narrates itself on stdout; its per-run log lines would repeat it.
    let default_level = if matches!(cli.command, Command::Demo { .. }) {
        "warn"
    } else {
        "info"
    };
    init_logging(cli.log_format, default_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error (internal): cannot start the async runtime: {e}");
            return ExitCode::from(ErrorClass::Internal.exit_code() as u8);
        }
    };
    let outcome = runtime.block_on(execute(cli));
    // Tasks still going (an interrupted run's reader, a blocking read of SQLite) are
    // abandoned, not waited for: the outcome is decided.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match outcome {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(class)) => ExitCode::from(class.exit_code() as u8),
        Err(e) => {
            eprintln!("error ({}): {}", e.class, e.report());
            ExitCode::from(e.class.exit_code() as u8)
        }
    }
}

fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{level},sqlx=warn,datafusion=warn,deltalake_core=warn,buoyant_kernel=warn,buoyant_kernel_engine=warn"))
    });
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder
            .with_writer(std::io::stderr)
            .json()
            .with_current_span(true)
            .init();
    } else {
        if std::io::stderr().is_terminal() {
            sluice::telemetry::progress::enable();
        }
        builder
            .with_writer(|| sluice::telemetry::progress::LogWriter)
            .with_target(false)
            .init();
    }
}
