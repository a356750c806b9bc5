//! The `portcullis` command: `serve` and `check-config`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use portcullis::config::LogFormat;
use portcullis::{App, Config};

#[derive(Parser)]
#[command(name = "portcullis", version, about = "A hardened private OCI container registry")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry (TLS only).
    Serve {
        /// TOML configuration file; every key can also come from PORTCULLIS_* variables.
        #[arg(long, env = "PORTCULLIS_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Validate the configuration and exit.
    CheckConfig {
        #[arg(long, env = "PORTCULLIS_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::CheckConfig { config } => Config::load(config.as_deref()).map(|c| {
            println!("configuration is valid: listening on {}, data in {}", c.listen, c.data_dir.display());
        }),
        Command::Serve { config } => Config::load(config.as_deref()).and_then(|c| {
            init_logging(c.log_format);
            tokio::runtime::Runtime::new().context("starting the runtime")?.block_on(serve(c))
        }),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portcullis: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // Authentication has not landed yet: nothing but this machine may reach the registry.
    anyhow::ensure!(
        config.listen.ip().is_loopback(),
        "listen address {} is not a loopback address; until authentication is available Portcullis only binds to loopback",
        config.listen
    );
    let tls = portcullis::tls::setup(&config)?;
    let app = App::build(config).await?;
    let listener = tokio::net::TcpListener::bind(app.config.listen)
        .await
        .with_context(|| format!("binding {}", app.config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, public_url = %app.config.public_url(), "Portcullis is serving HTTPS");
    if let Some(ca) = &tls.dev_ca {
        let ca = ca.canonicalize().unwrap_or(ca.clone());
        tracing::info!(
            "development CA certificate: {}. To make docker trust it: sudo mkdir -p /etc/docker/certs.d/{addr} && sudo cp {} /etc/docker/certs.d/{addr}/ca.crt",
            ca.display(),
            ca.display()
        );
    }
    let sweeper = app.spawn_upload_sweeper();
    portcullis::server::serve(listener, tls.server_config, app.router.clone(), shutdown_signal()).await?;
    sweeper.abort();
    app.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}
