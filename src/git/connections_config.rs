//! Connections declared in the configuration file, for installs set up by configuration
//! management (Ansible, Helm) rather than by hand:
//!
//! ```toml
//! [[git.connections]]
//! name = "github-corp"
//! api_url = "https://ghe.corp.example/api/v3"
//! app_id = "123456"
//! private_key_file = "/run/secrets/github-app.pem"
//! webhook_secret_file = "/run/secrets/github-webhook"
//! ca_bundle_file = "/etc/ssl/corp-ca.pem"
//! ```
//!
//! At start they are written to the database (sealed like the others) and are read-only in the
//! console and the API; a changed file is written over them (audited as a change by the
//! system), and one the file no longer declares is removed unless projects use it. A connection
//! of the same name made in the console is refused at start rather than taken over.

use crate::audit::{self, Actor, Event, Origin, Outcome};
use crate::config::{ConfigError, Secret};
use crate::db::Db;
use crate::keys::Keys;

use super::connections::{self, ConnectionError, NewConnection};

/// One `[[git.connections]]` table.
#[derive(Debug, Clone)]
pub struct ConfiguredConnection {
    pub name: String,
    pub provider: String,
    pub api_url: String,
    pub app_id: String,
    pub client_id: Option<String>,
    pub private_key: Secret,
    pub webhook_secret: Secret,
    pub ca_bundle: Option<String>,
}

fn err(key: String, message: impl Into<String>) -> ConfigError {
    ConfigError { key, message: message.into() }
}

/// Parse the `git.connections` array of tables.
pub fn parse(value: &toml::Value, file: &str) -> Result<Vec<ConfiguredConnection>, ConfigError> {
    let toml::Value::Array(items) = value else {
        return Err(err("git.connections".into(), format!("in {file}: use [[git.connections]] tables, one per App")));
    };
    let mut out: Vec<ConfiguredConnection> = vec![];
    for (index, item) in items.iter().enumerate() {
        let toml::Value::Table(t) = item else {
            return Err(err(format!("git.connections[{index}]"), "must be a table"));
        };
        let f = crate::config::fields::Fields::new(t, format!("git.connections[{index}]"));
        f.only(&[
            "name",
            "provider",
            "api_url",
            "app_id",
            "client_id",
            "private_key",
            "private_key_file",
            "webhook_secret",
            "webhook_secret_file",
            "ca_bundle",
            "ca_bundle_file",
        ])?;
        let name = f.required("name")?;
        if !connections::valid_name(&name) {
            return Err(f.err("name", "is 1 to 63 lower-case letters, digits and dashes, e.g. github-corp"));
        }
        if out.iter().any(|c| c.name == name) {
            return Err(f.err("name", format!("`{name}` is declared twice")));
        }
        let private_key =
            f.value_or_file("private_key")?.ok_or_else(|| f.err("private_key", "is required (or private_key_file)"))?;
        let webhook_secret = f
            .value_or_file("webhook_secret")?
            .ok_or_else(|| f.err("webhook_secret", "is required (or webhook_secret_file)"))?;
        out.push(ConfiguredConnection {
            name,
            provider: f.string("provider")?.unwrap_or_else(|| "github".into()),
            api_url: f.required("api_url")?,
            app_id: f.required("app_id")?,
            client_id: f.string("client_id")?.filter(|c| !c.trim().is_empty()),
            private_key: Secret::new(private_key),
            webhook_secret: Secret::new(webhook_secret),
            ca_bundle: f.value_or_file("ca_bundle")?,
        });
    }
    Ok(out)
}

/// Why the declared connections could not be written.
#[derive(Debug, thiserror::Error)]
#[error("[[git.connections]] {name}: {reason}")]
pub struct ApplyError {
    pub name: String,
    pub reason: String,
}

/// Write the declared connections (at start, before serving). Returns the names of the
/// connections that changed, were added or removed.
pub async fn apply(db: &Db, keys: &Keys, declared: &[ConfiguredConnection]) -> Result<Vec<String>, ApplyError> {
    let failed = |name: &str, reason: String| ApplyError { name: name.to_owned(), reason };
    let database = |e: crate::error::AppError| failed("*", format!("database: {e}"));
    let mut tx = db.begin().await.map_err(|e| database(e.into()))?;
    let origin = Origin::system();
    let mut touched = vec![];
    for c in declared {
        let new = NewConnection {
            name: c.name.clone(),
            provider: c.provider.clone(),
            api_url: c.api_url.clone(),
            app_id: c.app_id.clone(),
            client_id: c.client_id.clone(),
            private_key: c.private_key.expose().to_owned(),
            webhook_secret: c.webhook_secret.expose().to_owned(),
            ca_bundle: c.ca_bundle.clone(),
        };
        let reason = |e: ConnectionError| failed(&c.name, e.to_string());
        if connections::made_here(&mut tx, &c.name).await.map_err(reason)? {
            return Err(failed(
                &c.name,
                "a connection of this name was made in the console or the API; delete it there or rename one".into(),
            ));
        }
        let exists = connections::configured_names(&mut tx).await.map_err(reason)?.contains(&c.name);
        let (action, fields) = if exists {
            ("git.connection.update", connections::overwrite(&mut tx, keys, &new).await.map_err(reason)?)
        } else {
            connections::insert(&mut tx, keys, new, true).await.map_err(reason)?;
            ("git.connection.create", vec![])
        };
        if action == "git.connection.update" && fields.is_empty() {
            continue;
        }
        let event = Event::new(action, Outcome::Allowed, Actor::System, &origin)
            .target("git_connection", &c.name)
            .intent(serde_json::json!({"source": "config", "fields": fields}));
        audit::record(&mut tx, event).await.map_err(database)?;
        touched.push(c.name.clone());
    }
    // Declared before, not any more: removed unless projects use it (then kept, read-only).
    let stored = connections::configured_names(&mut tx).await.map_err(|e| failed("*", e.to_string()))?;
    for name in stored.into_iter().filter(|n| !declared.iter().any(|c| &c.name == n)) {
        if connections::remove_configured(&mut tx, &name).await.map_err(|e| failed(&name, e.to_string()))? {
            let event = Event::new("git.connection.delete", Outcome::Allowed, Actor::System, &origin)
                .target("git_connection", &name)
                .intent(serde_json::json!({"source": "config"}));
            audit::record(&mut tx, event).await.map_err(database)?;
            touched.push(name);
        } else {
            tracing::warn!(event_type = "configured_connection_kept", connection = %name,
                "a connection no longer in the configuration file is kept: projects use it");
        }
    }
    tx.commit().await.map_err(|e| database(e.into()))?;
    Ok(touched)
}
