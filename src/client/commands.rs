//! The client subcommands: their arguments, how each resolves its connection, and what it prints.
//!
//! Output: a short human form by default, the API's JSON with `--json`. Exit codes: 0 done, 1 for
//! `wait-scan` an image that is blocked (quarantined), 2 an error (refused, unreachable, timed
//! out). Errors go to standard error and name what was refused and why.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use super::{profile, Client, ImageRef, Refused};
use crate::model::credential::ROBOT_PREFIX;

/// Exit code: a `wait-scan` verdict that blocks the image.
pub const EXIT_BLOCKED: u8 = 1;
/// Exit code: any error (refused, unreachable, timed out).
pub const EXIT_ERROR: u8 = 2;

/// Where the registry is and who is asking. Flags win over the environment, which wins over the
/// saved login (`portcullis login`).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Connection {
    /// The registry's URL (https://host:port); default: the image's host, or the saved login.
    #[arg(long, env = "PORTCULLIS_URL", global = true)]
    pub url: Option<String>,
    /// The account (a user, or robot$<namespace>+<name>); the password, token or robot secret
    /// comes from --password-stdin or PORTCULLIS_PASSWORD.
    #[arg(long, short = 'u', env = "PORTCULLIS_USERNAME", global = true)]
    pub username: Option<String>,
    /// Read the password, personal access token or robot secret from standard input.
    #[arg(long, global = true)]
    pub password_stdin: bool,
    /// A PEM file of CAs to trust (the development CA's ca.crt, served at /ca.crt).
    #[arg(long, env = "PORTCULLIS_CA_FILE", global = true)]
    pub ca_file: Option<PathBuf>,
    /// Print the API's JSON instead of the human form.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(clap::Subcommand, Debug)]
pub enum ClientCommand {
    /// Log in to a registry and save the login (a personal access token made for this client, or
    /// a robot's secret) for the other client commands.
    Login {
        /// The registry's URL (https://host:port).
        registry: Option<String>,
        /// How long the personal access token made for this client lives (users; a robot's
        /// secret is saved as it is).
        #[arg(long, default_value = "90d")]
        expires: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Revoke the token the saved login holds, and forget the login.
    Logout,
    /// Wait for an image's scan verdict: exit 0 when it passed (or was released), 1 when it is
    /// quarantined (findings printed), 2 on an error or timeout. Made for CI after `docker push`.
    WaitScan {
        /// The image: [host:port/]repository[:tag|@digest].
        image: String,
        /// How long to wait for the verdict (such as 90s, 10m).
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        timeout: Duration,
        #[command(flatten)]
        conn: Connection,
    },
    /// Users (administrators).
    Users {
        #[command(subcommand)]
        task: UsersTask,
        #[command(flatten)]
        conn: Connection,
    },
    /// Namespaces and their members.
    Namespaces {
        #[command(subcommand)]
        task: NamespacesTask,
        #[command(flatten)]
        conn: Connection,
    },
    /// Robot accounts for CI (owners of the namespace, administrators).
    Robots {
        #[command(subcommand)]
        task: RobotsTask,
        #[command(flatten)]
        conn: Connection,
    },
    /// Scan verdicts: read them; release, reject or rescan an image (administrators).
    Scans {
        #[command(subcommand)]
        task: ScansTask,
        #[command(flatten)]
        conn: Connection,
    },
    /// Tags of a repository.
    Tags {
        #[command(subcommand)]
        task: TagsTask,
        #[command(flatten)]
        conn: Connection,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum UsersTask {
    List,
    /// Create a user; the new user's password is read from standard input.
    Create {
        name: String,
        #[arg(long)]
        admin: bool,
    },
    Delete {
        name: String,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum NamespacesTask {
    List,
    Create {
        name: String,
        /// Anyone may pull (anonymous clients too).
        #[arg(long)]
        public: bool,
    },
    Members {
        namespace: String,
    },
    /// Give a user a role: owner, maintainer, developer or reader.
    SetMember {
        namespace: String,
        /// (Not `username`, which is the connection's own option.)
        user: String,
        role: String,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum RobotsTask {
    List {
        namespace: String,
    },
    /// Create a robot; its secret is printed once, with the `docker login` line that uses it.
    Create {
        namespace: String,
        name: String,
        /// What it may do: pull, push, delete (comma-separated).
        #[arg(long, default_value = "pull,push", value_delimiter = ',')]
        actions: Vec<String>,
        /// Only repositories matching these patterns (`apps/*`); repeat for more.
        #[arg(long = "repository")]
        repositories: Vec<String>,
        /// When it expires: a duration from now (90d) or an RFC 3339 time.
        #[arg(long, default_value = "90d")]
        expires: String,
    },
    /// Give a robot a new secret (the old one stops working at once).
    Rotate {
        namespace: String,
        name: String,
    },
    Revoke {
        namespace: String,
        name: String,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum ScansTask {
    /// Scans in a state (administrators): pending, scanning, passed, quarantined, error, released.
    List {
        #[arg(long)]
        state: Option<String>,
    },
    /// An image's verdict and findings.
    Show { image: String },
    /// Let an image be pulled despite its findings (recorded with your name and the reason).
    Release {
        image: String,
        #[arg(long)]
        reason: String,
        /// The release lapses after this (a duration such as 7d, or an RFC 3339 time).
        #[arg(long)]
        expires: Option<String>,
    },
    /// Delete a quarantined image from its repository, tags included.
    Reject {
        image: String,
        #[arg(long)]
        reason: String,
    },
    /// Scan an image again with today's rules and data.
    Rescan { image: String },
}

#[derive(clap::Subcommand, Debug)]
pub enum TagsTask {
    List {
        repository: String,
    },
    /// Delete a tag: repository:tag.
    Delete {
        image: String,
    },
}

/// Runs a client command; the process's exit code.
pub async fn run(command: ClientCommand) -> u8 {
    let json = match &command {
        ClientCommand::Login { conn, .. }
        | ClientCommand::WaitScan { conn, .. }
        | ClientCommand::Users { conn, .. }
        | ClientCommand::Namespaces { conn, .. }
        | ClientCommand::Robots { conn, .. }
        | ClientCommand::Scans { conn, .. }
        | ClientCommand::Tags { conn, .. } => conn.json,
        ClientCommand::Logout => false,
    };
    match dispatch(command).await {
        Ok(code) => code,
        Err(e) => {
            if json {
                let (code, status) = match e.downcast_ref::<Refused>() {
                    Some(r) => (r.code.clone(), Some(r.status.as_u16())),
                    None => (String::new(), None),
                };
                println!("{}", json!({"error": {"message": format!("{e:#}"), "code": code, "status": status}}));
            }
            eprintln!("portcullis: {e:#}");
            EXIT_ERROR
        }
    }
}

/// The secret from standard input (one line) or PORTCULLIS_PASSWORD.
fn secret_from(conn: &Connection) -> anyhow::Result<Option<SecretString>> {
    if conn.password_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).context("reading the password from standard input")?;
        let secret = line.trim_end_matches(['\r', '\n']);
        anyhow::ensure!(!secret.is_empty(), "--password-stdin: no password on standard input");
        return Ok(Some(SecretString::from(secret.to_owned())));
    }
    Ok(std::env::var("PORTCULLIS_PASSWORD").ok().filter(|p| !p.is_empty()).map(SecretString::from))
}

/// The client for `conn`, with `image_host` (from an image reference) as the URL's fallback.
fn connect(conn: &Connection, image_host: Option<&str>) -> anyhow::Result<Client> {
    let saved = profile::load()?;
    let url = match (conn.url.clone(), image_host) {
        // An image names its registry: a command never acts on another one.
        (Some(url), Some(host)) => {
            let named = crate::model::authority_of(&url);
            anyhow::ensure!(
                named == host,
                "the image names the registry {host}, but --url (or PORTCULLIS_URL) is {url}: drop one of them"
            );
            url
        }
        (Some(url), None) => url,
        (None, Some(host)) => format!("https://{host}"),
        (None, None) => saved.as_ref().map(|p| p.url.clone()).context(
            "no registry URL: pass --url, set PORTCULLIS_URL, name the host in the image, or run portcullis login",
        )?,
    };
    let secret = secret_from(conn)?;
    let same_registry = |p: &profile::Profile| p.url.trim_end_matches('/') == url.trim_end_matches('/');
    let (username, secret) = match (conn.username.clone(), secret) {
        (Some(u), Some(s)) => (u, s),
        (None, Some(_)) => anyhow::bail!("a password was given without a username: pass --username or set PORTCULLIS_USERNAME"),
        (user, None) => match saved.as_ref().filter(|p| same_registry(p) && user.as_ref().is_none_or(|u| *u == p.username)) {
            Some(p) => (p.username.clone(), SecretString::from(p.secret.clone())),
            None => anyhow::bail!(
                "no credentials for {url}: pass --username with --password-stdin, set PORTCULLIS_USERNAME and PORTCULLIS_PASSWORD, or run portcullis login"
            ),
        },
    };
    let ca_file =
        conn.ca_file.clone().or_else(|| saved.as_ref().filter(|p| same_registry(p)).and_then(|p| p.ca_file.clone()));
    Client::new(&url, &username, secret, ca_file.as_deref())
}

fn image(text: &str) -> anyhow::Result<ImageRef> {
    text.parse::<ImageRef>().map_err(|e| anyhow::anyhow!(e))
}

fn print_json(value: &Value) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
}

/// Rows of text in aligned columns.
fn table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_uppercase()).collect());
    for row in rows {
        line(row);
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

async fn dispatch(command: ClientCommand) -> anyhow::Result<u8> {
    match command {
        ClientCommand::Login { registry, expires, mut conn } => {
            if registry.is_some() {
                conn.url = registry;
            }
            login(conn, &expires).await
        }
        ClientCommand::Logout => {
            let Some(saved) = profile::load()? else {
                println!("there was no saved login");
                return Ok(0);
            };
            let revoked = revoke(&saved).await;
            profile::remove()?;
            match revoked {
                Ok(()) => {
                    println!("logged out of {}: the login's token is revoked and the saved login removed", saved.url);
                    Ok(0)
                }
                Err(e) => Err(e.context(format!(
                    "the saved login is removed, but its token could not be revoked: revoke it with DELETE {}/api/v1/tokens/{}",
                    saved.url,
                    saved.token_id.as_deref().unwrap_or("?")
                ))),
            }
        }
        ClientCommand::WaitScan { image: text, timeout, conn } => {
            let image = image(&text)?;
            let client = connect(&conn, image.host.as_deref())?;
            wait_scan(&client, &image, timeout, conn.json).await
        }
        ClientCommand::Users { task, conn } => {
            let client = connect(&conn, None)?;
            let out = match task {
                UsersTask::List => client.api(Method::GET, "/users?limit=1000", None).await?,
                UsersTask::Create { name, admin } => {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .context("reading the new user's password from standard input")?;
                    let password = line.trim_end_matches(['\r', '\n']);
                    let body = json!({"username": name, "password": password, "admin": admin});
                    client.api(Method::POST, "/users", Some(body)).await?
                }
                UsersTask::Delete { name } => {
                    client.api(Method::DELETE, &format!("/users/{}", segment(&name)), None).await?;
                    json!({"deleted": name})
                }
            };
            show(&out, conn.json, &["username", "admin", "disabled", "created_at"]);
            Ok(0)
        }
        ClientCommand::Namespaces { task, conn } => {
            let client = connect(&conn, None)?;
            let (out, columns): (Value, &[&str]) = match task {
                NamespacesTask::List => {
                    (client.api(Method::GET, "/namespaces?limit=1000", None).await?, &["name", "public", "created_at"])
                }
                NamespacesTask::Create { name, public } => (
                    client.api(Method::POST, "/namespaces", Some(json!({"name": name, "public": public}))).await?,
                    &["name", "public", "created_at"],
                ),
                NamespacesTask::Members { namespace } => (
                    client.api(Method::GET, &format!("/namespaces/{}/members", segment(&namespace)), None).await?,
                    &["username", "role"],
                ),
                NamespacesTask::SetMember { namespace, user, role } => (
                    client
                        .api(
                            Method::PUT,
                            &format!("/namespaces/{}/members/{}", segment(&namespace), segment(&user)),
                            Some(json!({"role": role})),
                        )
                        .await?,
                    &["namespace", "username", "role"],
                ),
            };
            show(&out, conn.json, columns);
            Ok(0)
        }
        ClientCommand::Robots { task, conn } => {
            let client = connect(&conn, None)?;
            robots(&client, task, conn.json).await
        }
        ClientCommand::Scans { task, conn } => scans(&conn, task).await,
        ClientCommand::Tags { task, conn } => {
            match task {
                TagsTask::List { repository } => {
                    let client = connect(&conn, None)?;
                    let tags = client.tags(&repository).await?;
                    if conn.json {
                        print_json(&json!({"repository": repository, "tags": tags}));
                    } else {
                        tags.iter().for_each(|t| println!("{t}"));
                    }
                }
                TagsTask::Delete { image: text } => {
                    let image = image(&text)?;
                    anyhow::ensure!(!image.is_digest(), "tags delete takes repository:tag, not a digest");
                    let client = connect(&conn, image.host.as_deref())?;
                    client.delete_tag(&image).await?;
                    if conn.json {
                        print_json(&json!({"deleted": image.to_string()}));
                    } else {
                        println!("deleted tag {image}");
                    }
                }
            }
            Ok(0)
        }
    }
}

/// A list (`{"items": [...]}`) as a table, one object as `key: value` lines, or the JSON.
fn show(out: &Value, json: bool, columns: &[&str]) {
    if json {
        return print_json(out);
    }
    if out.get("items").is_some() {
        let rows = items(out).iter().map(|i| columns.iter().map(|c| text(&i[*c])).collect()).collect();
        return table(columns, rows);
    }
    if let Some(map) = out.as_object() {
        for (k, v) in map {
            println!("{k}: {}", text(v));
        }
    }
}

/// Revokes the personal access token a saved login made (a robot's secret is not ours to revoke).
async fn revoke(saved: &profile::Profile) -> anyhow::Result<()> {
    let Some(id) = &saved.token_id else { return Ok(()) };
    let secret = SecretString::from(saved.secret.clone());
    let client = Client::new(&saved.url, &saved.username, secret, saved.ca_file.as_deref())?;
    match client.api(Method::DELETE, &format!("/tokens/{}", segment(id)), None).await {
        Ok(_) => Ok(()),
        // Already revoked, or expired.
        Err(e) if e.downcast_ref::<Refused>().is_some_and(|r| matches!(r.status.as_u16(), 401 | 404)) => Ok(()),
        Err(e) => Err(e),
    }
}

async fn login(conn: Connection, expires: &str) -> anyhow::Result<u8> {
    let url =
        conn.url.clone().context("portcullis login needs the registry URL: portcullis login https://host:port")?;
    let username = conn.username.clone().context("portcullis login needs --username (or PORTCULLIS_USERNAME)")?;
    let secret = secret_from(&conn)?.context("portcullis login needs --password-stdin (or PORTCULLIS_PASSWORD)")?;
    let client = Client::new(&url, &username, secret.clone(), conn.ca_file.as_deref())?;
    // A robot's secret is saved as it is; a user's password (or token) is exchanged for a token of
    // the client's own, so that no password is ever written down.
    let (saved, token_id) = if username.starts_with(ROBOT_PREFIX) {
        client.token("").await.context("logging in")?;
        (secret.expose_secret().to_owned(), None)
    } else {
        let name = format!("portcullis-cli-{}", crate::model::now());
        let body = json!({"name": name, "expires_at": expires});
        let created = client.api(Method::POST, "/tokens", Some(body)).await.context("logging in")?;
        let token = created["token"].as_str().context("the registry answered no token")?.to_owned();
        (token, created["id"].as_str().map(str::to_owned))
    };
    // The previous login's token goes (best effort: it may have expired already).
    if let Some(previous) = profile::load().ok().flatten() {
        if let Err(e) = revoke(&previous).await {
            eprintln!("portcullis: note: the previous login's token could not be revoked: {e:#}");
        }
    }
    let path = profile::save(&profile::Profile {
        url: client.base().to_owned(),
        username: username.clone(),
        secret: saved,
        ca_file: conn.ca_file.clone().map(|p| std::path::absolute(&p).unwrap_or(p)),
        token_id,
    })?;
    if conn.json {
        print_json(&json!({"url": client.base(), "username": username, "profile": path}));
    } else {
        println!("logged in to {} as {username}; saved in {}", client.base(), path.display());
    }
    Ok(0)
}

async fn robots(client: &Client, task: RobotsTask, json: bool) -> anyhow::Result<u8> {
    let columns: &[&str] = &["username", "actions", "repositories", "expires_at", "last_used_at", "revoked"];
    match task {
        RobotsTask::List { namespace } => show(
            &client.api(Method::GET, &format!("/namespaces/{}/robots", segment(&namespace)), None).await?,
            json,
            columns,
        ),
        RobotsTask::Create { namespace, name, actions, repositories, expires } => {
            let mut body = json!({"name": name, "actions": actions, "expires_at": expires});
            if !repositories.is_empty() {
                body["repositories"] = repositories.into();
            }
            let created =
                client.api(Method::POST, &format!("/namespaces/{}/robots", segment(&namespace)), Some(body)).await?;
            print_secret(client, &created, json);
        }
        RobotsTask::Rotate { namespace, name } => {
            let rotated = client
                .api(
                    Method::POST,
                    &format!("/namespaces/{}/robots/{}/rotate", segment(&namespace), segment(&name)),
                    None,
                )
                .await?;
            print_secret(client, &rotated, json);
        }
        RobotsTask::Revoke { namespace, name } => {
            client
                .api(Method::DELETE, &format!("/namespaces/{}/robots/{}", segment(&namespace), segment(&name)), None)
                .await?;
            if json {
                print_json(&json!({"revoked": format!("{ROBOT_PREFIX}{namespace}+{name}")}));
            } else {
                println!("revoked {ROBOT_PREFIX}{namespace}+{name}");
            }
        }
    }
    Ok(0)
}

/// A robot's new secret, shown once, with the login line that uses it.
fn print_secret(client: &Client, robot: &Value, json: bool) {
    if json {
        return print_json(robot);
    }
    let user = text(&robot["username"]);
    let host = crate::model::authority_of(client.base());
    println!("robot:   {user}");
    println!("expires: {}", text(&robot["expires_at"]));
    println!("secret:  {}  (shown once; store it in your CI's secret store)", text(&robot["secret"]));
    println!("login:   echo \"$SECRET\" | docker login {host} -u '{user}' --password-stdin");
}

async fn scans(conn: &Connection, task: ScansTask) -> anyhow::Result<u8> {
    let json = conn.json;
    let target = |image: &ImageRef, digest: &str| json!({"repository": image.repository, "digest": digest});
    match task {
        ScansTask::List { state } => {
            let client = connect(conn, None)?;
            let path = match state {
                Some(s) => format!("/scans?state={}&limit=1000", query(&s)),
                None => "/scans?limit=1000".to_owned(),
            };
            let out = client.api(Method::GET, &path, None).await?;
            show(&out, json, &["repository", "digest", "state", "summary", "updated_at"]);
        }
        ScansTask::Show { image: text } => {
            let image = image(&text)?;
            let client = connect(conn, image.host.as_deref())?;
            let digest = client.resolve(&image).await?;
            let report = client.scan(&image.repository, &digest, Duration::ZERO).await?;
            print_report(&image, &report, json);
        }
        ScansTask::Release { image: text, reason, expires } => {
            let image = image(&text)?;
            let client = connect(conn, image.host.as_deref())?;
            let digest = client.resolve(&image).await?;
            let mut body = target(&image, &digest);
            body["reason"] = reason.into();
            if let Some(e) = expires {
                body["expires_at"] = e.into();
            }
            let report = client.api(Method::POST, "/scans/release", Some(body)).await?;
            print_report(&image, &report, json);
        }
        ScansTask::Reject { image: text, reason } => {
            let image = image(&text)?;
            let client = connect(conn, image.host.as_deref())?;
            let digest = client.resolve(&image).await?;
            let mut body = target(&image, &digest);
            body["reason"] = reason.into();
            let out = client.api(Method::POST, "/scans/reject", Some(body)).await?;
            if json {
                print_json(&out);
            } else {
                println!("rejected {}@{digest}: deleted with its tags", image.repository);
            }
        }
        ScansTask::Rescan { image: text } => {
            let image = image(&text)?;
            let client = connect(conn, image.host.as_deref())?;
            let digest = client.resolve(&image).await?;
            let report = client.api(Method::POST, "/scans/rescan", Some(target(&image, &digest))).await?;
            print_report(&image, &report, json);
        }
    }
    Ok(0)
}

/// A scan report: verdict, summary, and every finding.
fn print_report(image: &ImageRef, report: &Value, json: bool) {
    if json {
        return print_json(report);
    }
    println!("{}@{}: {}", image.repository, text(&report["digest"]), text(&report["state"]));
    if let Some(summary) = report["summary"].as_str() {
        println!("  {summary}");
    }
    if let Some(by) = report["released_by"].as_str() {
        println!("  released by {by}: {}", text(&report["release_reason"]));
    }
    for f in report["findings"].as_array().into_iter().flatten() {
        let mut line = format!("  - [{}] {}: {}", text(&f["severity"]), text(&f["rule"]), text(&f["message"]));
        if let Some(path) = f["path"].as_str() {
            line.push_str(&format!(" ({path})"));
        }
        println!("{line}");
    }
}

/// Whether a failure may pass by itself (a replica restarting, a busy registry, a lost
/// connection): `wait-scan` tries again until its deadline instead of failing the CI job.
fn transient(e: &anyhow::Error) -> bool {
    match e.downcast_ref::<Refused>() {
        Some(r) => r.status.is_server_error() || r.status.as_u16() == 429,
        None => e.to_string().starts_with("cannot reach"),
    }
}

/// Waits for a settled verdict, long-polling a minute at a time until `timeout`.
async fn wait_scan(client: &Client, image: &ImageRef, timeout: Duration, json: bool) -> anyhow::Result<u8> {
    let deadline = Instant::now() + timeout;
    let digest = client.resolve(image).await?;
    let mut last_state = String::from("pending");
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            anyhow::bail!(
                "timed out after {} waiting for the scan of {}@{digest} (still {last_state})",
                humantime::format_duration(timeout),
                image.repository
            );
        }
        let wait = left.min(Duration::from_secs(60)).max(Duration::from_secs(1));
        let report = match client.scan(&image.repository, &digest, wait).await {
            Ok(r) => r,
            Err(e) if transient(&e) => {
                eprintln!("portcullis: {e:#}; trying again");
                tokio::time::sleep(Duration::from_secs(2).min(left)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        last_state = report["state"].as_str().unwrap_or("").to_owned();
        let settled = !matches!(last_state.as_str(), "pending" | "scanning") && report["rescan_requested"] != true;
        if settled {
            print_report(image, &report, json);
            return Ok(match last_state.as_str() {
                "passed" | "released" => 0,
                "quarantined" => EXIT_BLOCKED,
                _ => EXIT_ERROR,
            });
        }
    }
}

/// A value as one URL path segment (a name with `/`, `..` or `?` cannot reach another endpoint).
fn segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A value as a query parameter.
fn query(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Wrapper {
        #[command(subcommand)]
        command: ClientCommand,
    }

    #[test]
    fn the_arguments_are_consistent_and_parse() {
        use clap::{CommandFactory, Parser};
        Wrapper::command().debug_assert();
        let parsed =
            Wrapper::try_parse_from(["x", "wait-scan", "h:5000/team/app:1", "--timeout", "90s", "--json"]).unwrap();
        match parsed.command {
            ClientCommand::WaitScan { image, timeout, conn } => {
                assert_eq!((image.as_str(), timeout, conn.json), ("h:5000/team/app:1", Duration::from_secs(90), true));
            }
            other => panic!("{other:?}"),
        }
        let member = Wrapper::try_parse_from(["x", "namespaces", "set-member", "team", "dev", "developer"]).unwrap();
        match member.command {
            ClientCommand::Namespaces { task: NamespacesTask::SetMember { namespace, user, role }, conn } => {
                assert_eq!((namespace.as_str(), user.as_str(), role.as_str()), ("team", "dev", "developer"));
                assert_eq!(conn.username, None, "a positional argument must not fill a connection option");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(segment("../namespaces/team"), "%2E%2E%2Fnamespaces%2Fteam");
        assert_eq!(query("a&b=c"), "a%26b%3Dc");
        let login = Wrapper::try_parse_from(["x", "login", "https://h:5000", "-u", "dev", "--password-stdin"]).unwrap();
        assert!(matches!(login.command, ClientCommand::Login { registry: Some(_), .. }));
    }
}
