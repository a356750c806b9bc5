//! The saved login of the `portcullis` client: one JSON file (`$PORTCULLIS_CLIENT_CONFIG`, or
//! `$XDG_CONFIG_HOME/portcullis/client.json`, or `~/.config/portcullis/client.json`), 0600 in a
//! 0700 directory. It holds a personal access token made by `portcullis login` (or a robot's
//! secret), never a password.

use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// (No `Debug`: the secret must not reach a log by way of a debug print.)
#[derive(Clone, Serialize, Deserialize)]
pub struct Profile {
    pub url: String,
    pub username: String,
    pub secret: String,
    pub ca_file: Option<PathBuf>,
    /// The id of the personal access token `login` made (revoked by `logout` and the next login).
    #[serde(default)]
    pub token_id: Option<String>,
}

/// Where the profile lives.
pub fn path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PORTCULLIS_CLIENT_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("portcullis").join("client.json"))
}

/// The saved profile, if there is one.
pub fn load() -> anyhow::Result<Option<Profile>> {
    let Some(path) = path() else { return Ok(None) };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            serde_json::from_str(&text).map(Some).with_context(|| format!("reading the profile {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("reading the profile {}: {e}", path.display())),
    }
}

/// Saves `profile` (replacing any), private to this user.
pub fn save(profile: &Profile) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let path = path().context("no place for the profile: set HOME or PORTCULLIS_CLIENT_CONFIG")?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    // A fresh file of our own (O_EXCL, a random name: no symbolic link is followed), 0600, renamed
    // over the profile once written.
    let written = (|| -> std::io::Result<()> {
        let mut f = tempfile::NamedTempFile::new_in(dir)?;
        f.as_file().set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(serde_json::to_string_pretty(profile)?.as_bytes())?;
        f.as_file().sync_all()?;
        f.persist(&path).map_err(|e| e.error)?;
        Ok(())
    })();
    written.with_context(|| format!("writing the profile {}", path.display()))?;
    Ok(path)
}

/// Removes the saved profile; true if there was one.
pub fn remove() -> anyhow::Result<bool> {
    let Some(path) = path() else { return Ok(false) };
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(anyhow::anyhow!("removing the profile {}: {e}", path.display())),
    }
}
