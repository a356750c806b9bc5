//! The `portcullis` command: the server (`serve`, `check-config`, offline tasks) and the client
//! commands (`login`, `wait-scan`, `scans`, ...) that talk to a running registry.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use portcullis::config::LogFormat;
use portcullis::{App, Config};
use secrecy::{ExposeSecret, SecretString};

#[derive(Parser)]
#[command(name = "portcullis", version, about = "A hardened private OCI container registry")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum AuditTask {
    /// Recompute the chain and compare it with what is stored; prints the report as JSON.
    Verify,
    /// Print the chained records as JSON lines, oldest first.
    Export {
        /// Start at this record id (default: the chain's start).
        #[arg(long)]
        from: Option<i64>,
    },
}

#[derive(Subcommand)]
enum VulndbTask {
    /// Import OSV exports (OSV's per-ecosystem `all.zip`, JSON records or arrays of them, or
    /// directories of those); running registries reload within `scan.poll` and match every
    /// passed image again. Prints what changed as JSON.
    Import {
        /// Files or directories.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the data's version, import time and record count as JSON.
    Status,
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
    /// The scan sandbox (started by the registry itself; reads a scan on stdin).
    #[command(hide = true)]
    ScanSandbox {
        /// Address space limit, bytes.
        #[arg(long)]
        memory: u64,
        /// CPU time limit, seconds.
        #[arg(long)]
        cpu: u64,
        /// The registry's process id.
        #[arg(long)]
        parent: i32,
    },
    /// Collect garbage once and print the report as JSON (the same collection the server runs; it
    /// may run while the registry serves).
    Gc {
        #[arg(long, env = "PORTCULLIS_CONFIG")]
        config: Option<PathBuf>,
        /// Report what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Compare the database with the blob store and print the report as JSON; exits 1 if
    /// anything is missing, orphaned or corrupt.
    Fsck {
        #[arg(long, env = "PORTCULLIS_CONFIG")]
        config: Option<PathBuf>,
        /// Re-hash every stored blob (reads all of them).
        #[arg(long)]
        verify: bool,
    },
    /// The audit log: `verify` checks its hash chain (exit 1 when it is broken, naming the first
    /// broken record); `export` writes every record as a JSON line.
    Audit {
        #[arg(long, env = "PORTCULLIS_CONFIG")]
        config: Option<PathBuf>,
        #[command(subcommand)]
        task: AuditTask,
    },
    /// The vulnerability data the scanner matches packages against (in the database, shared by
    /// every replica; the registry may be running).
    Vulndb {
        #[arg(long, env = "PORTCULLIS_CONFIG")]
        config: Option<PathBuf>,
        #[command(subcommand)]
        task: VulndbTask,
    },
    /// Client commands, against a running registry over its APIs.
    #[command(flatten)]
    Client(portcullis::client::commands::ClientCommand),
    /// Offline administration of the data directory (the registry may be stopped).
    Admin {
        #[arg(long, env = "PORTCULLIS_CONFIG")]
        config: Option<PathBuf>,
        #[command(subcommand)]
        task: AdminTask,
    },
}

#[derive(Subcommand)]
enum AdminTask {
    /// Create a user; the password is read from standard input.
    CreateUser {
        username: String,
        #[arg(long)]
        admin: bool,
    },
    /// Set a user's password (read from standard input) and enable the account.
    ResetPassword { username: String },
    /// Create a namespace.
    CreateNamespace {
        name: String,
        #[arg(long)]
        public: bool,
    },
    /// Give a user a role (owner, maintainer, developer, reader) in a namespace.
    SetMember { namespace: String, username: String, role: String },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal: a log file or journal gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Keeps freed memory from piling up in glibc's per-thread arenas. Without a fixed mmap threshold,
/// glibc raises it after the first large free, and every 19 MiB argon2 buffer then stays in the
/// arena of whichever blocking thread ran it: hundreds of MiB after a burst of logins.
fn tune_allocator() {
    // SAFETY: mallopt only adjusts allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 4);
        // Keep up to 32 MiB of freed heap instead of handing it back after every request: a blob
        // pull allocates its 256 KiB read buffers over and over, and returning them made each one
        // page-fault back in (with TLB shootdowns), a tenth of a pull's CPU.
        libc::mallopt(libc::M_TRIM_THRESHOLD, 32 << 20);
    }
}

fn main() -> std::process::ExitCode {
    // Everything this process creates (database, blobs, keys, scan layouts) is its user's alone.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    // Nothing this process starts (the scan sandbox, hooks) gains privileges by exec: no setuid
    // bits, no file capabilities. Set before any thread exists, so every thread and child has it.
    if let Err(e) = rustix::thread::set_no_new_privs(true) {
        eprintln!("portcullis: cannot set PR_SET_NO_NEW_PRIVS: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    if let Command::ScanSandbox { memory, cpu, parent } = cli.command {
        // Its own process with its own limits: no runtime, no logging, no allocator tuning.
        let limits = portcullis::scan::sandbox::ChildLimits { memory, cpu_seconds: cpu, parent };
        return portcullis::scan::sandbox::child_main(limits);
    }
    tune_allocator();
    let result = match cli.command {
        Command::CheckConfig { config } => Config::load(config.as_deref())
            .and_then(|c| tokio::runtime::Runtime::new().context("starting the runtime")?.block_on(check_config(c))),
        Command::Serve { config } => Config::load(config.as_deref()).and_then(|c| {
            init_logging(c.log_format);
            tokio::runtime::Runtime::new().context("starting the runtime")?.block_on(serve(c))
        }),
        Command::Admin { config, task } => Config::load(config.as_deref())
            .and_then(|c| tokio::runtime::Runtime::new().context("starting the runtime")?.block_on(admin(c, task))),
        Command::Gc { config, dry_run } => Config::load(config.as_deref())
            .and_then(|c| tokio::runtime::Runtime::new().context("starting the runtime")?.block_on(gc(c, dry_run))),
        Command::Fsck { config, verify } => {
            match Config::load(config.as_deref())
                .and_then(|c| tokio::runtime::Runtime::new().context("starting the runtime")?.block_on(fsck(c, verify)))
            {
                Ok(true) => Ok(()),
                Ok(false) => return std::process::ExitCode::FAILURE,
                Err(e) => Err(e),
            }
        }
        Command::Audit { config, task } => {
            match Config::load(config.as_deref())
                .and_then(|c| tokio::runtime::Runtime::new().context("starting the runtime")?.block_on(audit(c, task)))
            {
                Ok(true) => Ok(()),
                Ok(false) => return std::process::ExitCode::FAILURE,
                Err(e) => Err(e),
            }
        }
        Command::Vulndb { config, task } => Config::load(config.as_deref())
            .and_then(|c| tokio::runtime::Runtime::new().context("starting the runtime")?.block_on(vulndb(c, task))),
        Command::Client(command) => {
            return match tokio::runtime::Runtime::new() {
                Ok(rt) => std::process::ExitCode::from(rt.block_on(portcullis::client::commands::run(command))),
                Err(e) => {
                    eprintln!("portcullis: starting the runtime: {e}");
                    std::process::ExitCode::from(portcullis::client::commands::EXIT_ERROR)
                }
            };
        }
        Command::ScanSandbox { .. } => unreachable!("handled above"),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portcullis: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn read_secret() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let secret = line.trim_end_matches(['\r', '\n']).to_owned();
    anyhow::ensure!(!secret.is_empty(), "no password on standard input");
    Ok(secret)
}

/// Validates the configuration, then proves the database and the blob store reachable and writable.
async fn check_config(config: Config) -> anyhow::Result<()> {
    let (listen, database, storage) = (
        config.listen,
        match &config.database.url {
            Some(_) => "the database at database.url".to_owned(),
            None => format!("SQLite at {}", config.database_path().display()),
        },
        match config.storage.backend {
            portcullis::config::StorageBackend::S3 => {
                format!("S3 bucket {}", config.storage.s3.bucket.as_deref().unwrap_or(""))
            }
            portcullis::config::StorageBackend::Local => format!("local disk at {}", config.blob_dir().display()),
        },
    );
    let app = App::build(config).await?;
    let checked = app.check().await;
    app.close().await;
    checked?;
    println!("configuration is valid: listening on {listen}; {database} and {storage} are reachable and writable");
    Ok(())
}

async fn gc(config: Config, dry_run: bool) -> anyhow::Result<()> {
    let app = App::build(config).await?;
    let holder = format!("cli-{}", app.instance);
    let report = app.registry.collect_garbage(&holder, dry_run).await;
    app.close().await;
    println!("{}", serde_json::to_string_pretty(&report?)?);
    Ok(())
}

async fn vulndb(config: Config, task: VulndbTask) -> anyhow::Result<()> {
    let max_bytes = config.scan.vulndb_max_bytes;
    let app = App::build(config).await?;
    let result = match task {
        VulndbTask::Import { files } => {
            let export = portcullis::domain::vulndb::Export::default();
            portcullis::import_vulndb(&app.registry, export, files, max_bytes, "system:cli").await.map(|(r, _)| {
                serde_json::json!({
                    "version": r.count.state.version,
                    "records": r.count.state.records,
                    "added": r.count.added,
                    "changed": r.count.changed,
                    "unchanged": r.count.unchanged,
                    "removed": r.count.removed,
                    "skipped": r.skipped,
                })
            })
        }
        VulndbTask::Status => app.registry.vulndb_state().await.map_err(Into::into).map(|s| {
            serde_json::json!({
                "version": s.version,
                "imported_at": s.imported_at.map(portcullis::model::rfc3339),
                "records": s.records,
            })
        }),
    };
    app.close().await;
    println!("{}", serde_json::to_string_pretty(&result?)?);
    Ok(())
}

/// True when the database and the blob store agree.
async fn fsck(config: Config, verify: bool) -> anyhow::Result<bool> {
    let app = App::build(config).await?;
    let report = app.registry.fsck(verify).await;
    app.close().await;
    let report = report?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(report.missing.is_empty() && report.orphaned.is_empty() && report.corrupt.is_empty())
}

/// False when `verify` found the chain broken.
async fn audit(config: Config, task: AuditTask) -> anyhow::Result<bool> {
    use std::io::Write;
    let app = App::build(config).await?;
    let result = async {
        match task {
            AuditTask::Verify => {
                let report = app.registry.verify_audit().await?;
                println!("{}", serde_json::to_string_pretty(&report)?);
                Ok(report.ok)
            }
            AuditTask::Export { from } => {
                app.registry.chain_audit().await?;
                let mut next = match from {
                    Some(id) => id,
                    None => app.registry.audit_start().await?,
                };
                let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                loop {
                    let page = app.registry.audit_page(next).await?;
                    let Some(last) = page.last() else { break };
                    next = last.id + 1;
                    for record in &page {
                        writeln!(out, "{}", serde_json::to_string(record)?)?;
                    }
                }
                out.flush()?;
                Ok(true)
            }
        }
    }
    .await;
    app.close().await;
    result
}

async fn admin(config: Config, task: AdminTask) -> anyhow::Result<()> {
    let app = App::build(config).await?;
    let result = match task {
        AdminTask::CreateUser { username, admin } => {
            app.auth.create_user(&username, &read_secret()?, admin).await.map(|_| format!("created user {username}"))
        }
        AdminTask::ResetPassword { username } => app
            .auth
            .update_user(&username, Some(&read_secret()?), None, Some(false))
            .await
            .map(|_| format!("password of {username} set")),
        AdminTask::CreateNamespace { name, public } => {
            app.auth.create_namespace(&name, public).await.map(|_| format!("created namespace {name}"))
        }
        AdminTask::SetMember { namespace, username, role } => {
            let role =
                portcullis::auth::Role::parse(&role).context("role must be owner, maintainer, developer or reader")?;
            app.auth
                .set_member(&namespace, &username, role)
                .await
                .map(|_| format!("{username} is {} of {namespace}", role.as_str()))
        }
    };
    app.close().await;
    println!("{}", result?);
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let open_files = portcullis::server::raise_file_limit();
    let settings = config.server_settings(open_files);
    tracing::info!(open_files, max_connections = settings.max_connections, "connection limits");
    if let Some(problem) = config.public_url_problem() {
        tracing::warn!("{problem}");
    }
    // Held until the process ends: one server per SQLite data directory.
    let _lock = portcullis::lock_data_dir(&config)?;
    let tls = portcullis::tls::setup(&config)?;
    let app = App::build(config).await?;
    let admin_password = match std::env::var_os("PORTCULLIS_ADMIN_PASSWORD_FILE") {
        // A mounted secret (compose, Kubernetes): the password never sits in the environment.
        Some(file) => Some(portcullis::config::read_secret_file(std::path::Path::new(&file))?.expose_secret().into()),
        None => std::env::var("PORTCULLIS_ADMIN_PASSWORD").ok().map(SecretString::from),
    }
    .filter(|p: &SecretString| !p.expose_secret().is_empty());
    if let Some(file) = app.auth.bootstrap_admin(&app.config.data_dir, admin_password).await? {
        tracing::info!(file = %file.display(), "created the admin user; its password is in this file (readable by the owner only)");
    }
    let listener = tokio::net::TcpListener::bind(app.config.listen)
        .await
        .with_context(|| format!("binding {}", app.config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, public_url = %app.config.public_url(), "Portcullis is serving HTTPS");
    if let Some(ca) = &tls.dev_ca {
        // The hint names the host clients use (public_url), which is what docker looks up in certs.d.
        let ca = ca.canonicalize().unwrap_or(ca.clone());
        let host = portcullis::model::authority_of(&app.config.public_url());
        tracing::info!(
            "development CA certificate: {} (also at {}/ca.crt). To make docker trust it: sudo mkdir -p /etc/docker/certs.d/{host} && sudo cp {} /etc/docker/certs.d/{host}/ca.crt",
            ca.display(),
            app.config.public_url(),
            ca.display()
        );
    }
    let sweeper = app.spawn_upload_sweeper();
    let scanner = app.spawn_scan_worker()?;
    let collector = app.spawn_collector();
    let chainer = app.spawn_audit_chainer();
    let sender = app.spawn_webhook_sender()?;
    portcullis::server::serve(listener, tls.server_config, app.router.clone(), settings, shutdown_signal()).await?;
    sweeper.abort();
    scanner.abort();
    chainer.abort();
    sender.abort();
    // What the last second wrote is chained before the process goes.
    if let Err(e) = app.registry.chain_audit().await {
        tracing::warn!(error = %e, "chaining audit records at shutdown failed");
    }
    if let Some(collector) = collector {
        collector.abort();
    }
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
