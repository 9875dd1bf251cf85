//! Connections to remote git providers (docs/github.md): an Admin names a provider host and its
//! credentials once — for GitHub, an App (github.com or Enterprise Server): its API base URL,
//! App id, client id, private key and webhook secret — and projects refer to the connection by
//! name. The private key and the webhook secret are sealed with the instance key (bound to the
//! connection's name and the field), never shown again and never logged; changing them is a
//! rotation, recorded as such. A connection that projects use cannot be deleted.

use std::fmt;

use serde::Serialize;
use sqlx::AnyConnection;
use url::Url;

use crate::auth::access::{Administer, OrgGrant};
use crate::db::{is_foreign_key_violation, is_unique_violation, now_ms, rfc3339};
use crate::error::AppError;
use crate::keys::Keys;

/// The remote providers a connection can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    GitHub,
}

impl Provider {
    pub fn parse(s: &str) -> Option<Provider> {
        match s {
            "github" => Some(Provider::GitHub),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::GitHub => "github",
        }
    }
}

/// A connection as anyone may see it: no secret, only whether a CA bundle is set.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Connection {
    pub name: String,
    /// `github`.
    #[schema(value_type = String)]
    pub provider: Provider,
    /// REST base: `https://api.github.com` or `https://HOST/api/v3` (Enterprise Server).
    pub api_url: String,
    /// GraphQL endpoint derived from it (`https://HOST/api/graphql` on Enterprise Server).
    pub graphql_url: String,
    pub app_id: String,
    pub client_id: Option<String>,
    /// Whether TLS to the host also trusts a CA bundle of its own (internal CAs).
    pub ca_bundle: bool,
    pub created_at: String,
    pub updated_at: String,
    /// When the private key or the webhook secret was last set.
    pub secrets_rotated_at: String,
    /// Declared in the configuration file: changed there, not here.
    pub from_config: bool,
}

/// A connection's secrets, opened for the adapter that calls the provider. Never printed.
pub struct Secrets {
    pub private_key_pem: String,
    pub webhook_secret: String,
    pub ca_bundle: Option<String>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secrets(redacted)")
    }
}

/// What an Admin sends to create a connection.
pub struct NewConnection {
    pub name: String,
    pub provider: String,
    pub api_url: String,
    pub app_id: String,
    pub client_id: Option<String>,
    pub private_key: String,
    pub webhook_secret: String,
    pub ca_bundle: Option<String>,
}

/// A change to a connection: only the fields that are `Some` change (`ca_bundle: Some(None)`
/// removes the bundle).
#[derive(Default)]
pub struct ConnectionChange {
    pub api_url: Option<String>,
    pub app_id: Option<String>,
    pub client_id: Option<Option<String>>,
    pub private_key: Option<String>,
    pub webhook_secret: Option<String>,
    pub ca_bundle: Option<Option<String>>,
}

impl ConnectionChange {
    /// The names of the fields it changes (for the audit record; never their values).
    pub fn fields(&self) -> Vec<&'static str> {
        let mut out = vec![];
        for (name, set) in [
            ("api_url", self.api_url.is_some()),
            ("app_id", self.app_id.is_some()),
            ("client_id", self.client_id.is_some()),
            ("private_key", self.private_key.is_some()),
            ("webhook_secret", self.webhook_secret.is_some()),
            ("ca_bundle", self.ca_bundle.is_some()),
        ] {
            if set {
                out.push(name);
            }
        }
        out
    }

    fn rotates(&self) -> bool {
        self.private_key.is_some() || self.webhook_secret.is_some()
    }
}

/// What can go wrong with connections.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("a connection named {0} exists already")]
    Exists(String),
    #[error("no such connection")]
    NotFound,
    #[error("projects use this connection")]
    InUse(Vec<String>),
    #[error("connection {0} comes from the configuration file ([[git.connections]]): change it there")]
    Managed(String),
    #[error("the connection's secrets cannot be opened with this instance key")]
    Unreadable,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<ConnectionError> for AppError {
    fn from(e: ConnectionError) -> Self {
        match e {
            ConnectionError::Invalid { field, message } => AppError::field(field, message),
            ConnectionError::Exists(_) | ConnectionError::InUse(_) | ConnectionError::Managed(_) => {
                AppError::Conflict(e.to_string())
            }
            ConnectionError::NotFound => AppError::NotFound,
            ConnectionError::Unreadable => AppError::Internal(anyhow::anyhow!("{e}")),
            ConnectionError::Db(e) => e.into(),
        }
    }
}

type Result<T> = std::result::Result<T, ConnectionError>;

fn invalid(field: &'static str, message: impl Into<String>) -> ConnectionError {
    ConnectionError::Invalid { field, message: message.into() }
}

/// Lower-case letters, digits and dashes, starting with a letter or digit: it appears in the
/// webhook URL (`/api/v1/webhooks/github/{name}`) and in project settings.
pub fn valid_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The REST base URL, normalised (no trailing slash), and the GraphQL endpoint it implies.
/// `https://api.github.com`, or `https://HOST[:port]/api/v3` for Enterprise Server; plain
/// `http://` only to a loopback address (a local test server), never across a network.
pub fn api_urls(provider: Provider, raw: &str) -> Result<(String, String)> {
    let Provider::GitHub = provider;
    let shape = "is https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server";
    let url = Url::parse(raw.trim()).map_err(|_| invalid("api_url", shape))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => return Err(invalid("api_url", "must use https:// (plain http only to this machine)")),
        _ => return Err(invalid("api_url", shape)),
    }
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("api_url", "has no user name, password, query or fragment"));
    }
    let host = url.host_str().unwrap_or_default();
    let origin = url.origin().ascii_serialization();
    let path = url.path().trim_end_matches('/');
    if host == "api.github.com" && path.is_empty() {
        return Ok((origin.clone(), format!("{origin}/graphql")));
    }
    if host != "api.github.com" && path == "/api/v3" {
        return Ok((format!("{origin}/api/v3"), format!("{origin}/api/graphql")));
    }
    Err(invalid("api_url", shape))
}

/// The App's private key as GitHub hands it out (PKCS#1 `RSA PRIVATE KEY`) or as PKCS#8, RSA of
/// at least 2,048 bits.
pub fn parse_private_key(pem: &str) -> std::result::Result<rsa::RsaPrivateKey, String> {
    use rsa::pkcs1::DecodeRsaPrivateKey as _;
    use rsa::pkcs8::DecodePrivateKey as _;
    use rsa::traits::PublicKeyParts as _;
    let pem = pem.trim();
    let key = rsa::RsaPrivateKey::from_pkcs1_pem(pem)
        .or_else(|_| rsa::RsaPrivateKey::from_pkcs8_pem(pem))
        .map_err(|_| "is not an RSA private key in PEM form (the .pem file GitHub generates for the App)".to_owned())?;
    if key.size() * 8 < 2048 {
        return Err("is shorter than 2,048 bits".into());
    }
    Ok(key)
}

/// The largest CA bundle kept (a few hundred certificates).
const MAX_CA_BUNDLE_BYTES: usize = 1 << 20;

/// Certificates only: every PEM block a `CERTIFICATE` that parses, nothing else but blank lines
/// (a private key pasted with them would otherwise be kept in the clear).
fn check_ca_bundle(pem: &str) -> Result<()> {
    if pem.len() > MAX_CA_BUNDLE_BYTES {
        return Err(invalid("ca_bundle", "is larger than 1 MiB"));
    }
    let mut inside = false;
    let mut blocks = 0;
    for line in pem.lines().map(str::trim) {
        match (inside, line) {
            (false, "") => {}
            (false, "-----BEGIN CERTIFICATE-----") => inside = true,
            (true, "-----END CERTIFICATE-----") => {
                inside = false;
                blocks += 1;
            }
            (true, l)
                if !l.starts_with("-----") && l.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)) => {}
            _ => {
                return Err(invalid(
                    "ca_bundle",
                    "holds only PEM certificates (BEGIN CERTIFICATE blocks), nothing else",
                ));
            }
        }
    }
    let parsed = reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map(|c| c.len()).unwrap_or(0);
    if inside || blocks == 0 || parsed != blocks {
        return Err(invalid("ca_bundle", "is not a bundle of PEM certificates"));
    }
    Ok(())
}

fn check_app_id(app_id: &str) -> Result<()> {
    if app_id.is_empty() || app_id.len() > 20 || !app_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("app_id", "is the App's numeric id (its settings page shows it)"));
    }
    Ok(())
}

fn check_client_id(client_id: &str) -> Result<()> {
    let ok = (1..=100).contains(&client_id.len())
        && client_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if !ok {
        return Err(invalid("client_id", "is the App's client id (letters, digits, dots), e.g. Iv23li…"));
    }
    Ok(())
}

fn check_webhook_secret(secret: &str) -> Result<()> {
    if secret.chars().count() < 16 || secret.len() > 1024 {
        return Err(invalid("webhook_secret", "is 16 to 1,024 characters (use a long random string)"));
    }
    Ok(())
}

fn purpose(name: &str, field: &str) -> String {
    format!("git_connection:{name}:{field}")
}

#[derive(sqlx::FromRow)]
struct Row {
    name: String,
    provider: String,
    api_url: String,
    app_id: String,
    client_id: Option<String>,
    private_key_sealed: String,
    webhook_secret_sealed: String,
    ca_bundle: Option<String>,
    created_at: i64,
    updated_at: i64,
    secrets_rotated_at: i64,
    from_config: i64,
}

impl Row {
    fn view(&self) -> Connection {
        let provider = Provider::parse(&self.provider).unwrap_or(Provider::GitHub);
        let (api_url, graphql_url) =
            api_urls(provider, &self.api_url).unwrap_or_else(|_| (self.api_url.clone(), String::new()));
        Connection {
            name: self.name.clone(),
            provider,
            api_url,
            graphql_url,
            app_id: self.app_id.clone(),
            client_id: self.client_id.clone(),
            ca_bundle: self.ca_bundle.is_some(),
            created_at: rfc3339(self.created_at),
            updated_at: rfc3339(self.updated_at),
            secrets_rotated_at: rfc3339(self.secrets_rotated_at),
            from_config: self.from_config != 0,
        }
    }
}

const COLUMNS: &str = "name, provider, api_url, app_id, client_id, private_key_sealed, webhook_secret_sealed, \
                       ca_bundle, created_at, updated_at, secrets_rotated_at, from_config";

async fn row(conn: &mut AnyConnection, name: &str) -> Result<Option<Row>> {
    // A name no connection can have (a NUL byte would be an error on PostgreSQL) is none.
    if !valid_name(name) {
        return Ok(None);
    }
    Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM git_connections WHERE name = $1"))
        .bind(name)
        .fetch_optional(conn)
        .await?)
}

/// Every connection, by name.
pub async fn list(conn: &mut AnyConnection) -> Result<Vec<Connection>> {
    let rows: Vec<Row> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM git_connections ORDER BY name")).fetch_all(conn).await?;
    Ok(rows.iter().map(Row::view).collect())
}

/// One connection.
pub async fn get(conn: &mut AnyConnection, name: &str) -> Result<Connection> {
    row(conn, name).await?.map(|r| r.view()).ok_or(ConnectionError::NotFound)
}

/// A connection's secrets, for the adapter.
pub async fn secrets(conn: &mut AnyConnection, keys: &Keys, name: &str) -> Result<Secrets> {
    let r = row(conn, name).await?.ok_or(ConnectionError::NotFound)?;
    let open = |field: &str, sealed: &str| keys.open(&purpose(name, field), sealed).ok_or(ConnectionError::Unreadable);
    Ok(Secrets {
        private_key_pem: open("private_key", &r.private_key_sealed)?,
        webhook_secret: open("webhook_secret", &r.webhook_secret_sealed)?,
        ca_bundle: r.ca_bundle,
    })
}

/// The webhook secret of connection `name` alone (`None`: no such connection), for checking a
/// delivery without opening the App's key.
pub async fn webhook_secret(conn: &mut AnyConnection, keys: &Keys, name: &str) -> Result<Option<String>> {
    let Some(r) = row(conn, name).await? else { return Ok(None) };
    keys.open(&purpose(name, "webhook_secret"), &r.webhook_secret_sealed).map(Some).ok_or(ConnectionError::Unreadable)
}

/// Create a connection (inside the caller's transaction, with its audit record).
pub async fn create(
    conn: &mut AnyConnection,
    keys: &Keys,
    _admin: &OrgGrant<Administer>,
    new: NewConnection,
) -> Result<Connection> {
    insert(conn, keys, new, false).await
}

/// Check every field of a connection (not its name); its provider and normalised API URL.
fn validate(new: &NewConnection) -> Result<(Provider, String)> {
    let provider = Provider::parse(&new.provider).ok_or_else(|| invalid("provider", "is github"))?;
    let (api_url, _) = api_urls(provider, &new.api_url)?;
    check_app_id(&new.app_id)?;
    if let Some(c) = &new.client_id {
        check_client_id(c)?;
    }
    parse_private_key(&new.private_key).map_err(|m| invalid("private_key", m))?;
    check_webhook_secret(&new.webhook_secret)?;
    if let Some(pem) = &new.ca_bundle {
        check_ca_bundle(pem)?;
    }
    Ok((provider, api_url))
}

/// Check a new connection and store it, sealed; `from_config` for one the configuration file
/// declares (see [`super::connections_config`]).
pub(crate) async fn insert(
    conn: &mut AnyConnection,
    keys: &Keys,
    new: NewConnection,
    from_config: bool,
) -> Result<Connection> {
    let name = new.name.trim().to_owned();
    if !valid_name(&name) {
        return Err(invalid("name", "is 1 to 63 lower-case letters, digits and dashes, e.g. github-corp"));
    }
    let (provider, api_url) = validate(&new)?;
    let now = now_ms();
    let done = sqlx::query(
        "INSERT INTO git_connections (name, provider, api_url, app_id, client_id, private_key_sealed, \
         webhook_secret_sealed, ca_bundle, created_at, updated_at, secrets_rotated_at, from_config) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $9, $10)",
    )
    .bind(&name)
    .bind(provider.as_str())
    .bind(&api_url)
    .bind(&new.app_id)
    .bind(&new.client_id)
    .bind(keys.seal(&purpose(&name, "private_key"), new.private_key.trim()))
    .bind(keys.seal(&purpose(&name, "webhook_secret"), &new.webhook_secret))
    .bind(&new.ca_bundle)
    .bind(now)
    .bind(i64::from(from_config))
    .execute(&mut *conn)
    .await;
    match done {
        Err(e) if is_unique_violation(&e) => return Err(ConnectionError::Exists(name)),
        other => other?,
    };
    get(conn, &name).await
}

/// What the configuration file declares for a connection it owns, written over the stored one;
/// whether anything changed (the fields), compared with what is stored, secrets opened.
pub(crate) async fn overwrite(conn: &mut AnyConnection, keys: &Keys, new: &NewConnection) -> Result<Vec<&'static str>> {
    let name = new.name.as_str();
    let current = row(conn, name).await?.ok_or(ConnectionError::NotFound)?;
    let (_, api_url) = validate(new)?;
    let open = |field: &str, sealed: &str| keys.open(&purpose(name, field), sealed);
    let mut changed = vec![];
    if current.api_url != api_url {
        changed.push("api_url");
    }
    if current.app_id != new.app_id {
        changed.push("app_id");
    }
    if current.client_id != new.client_id {
        changed.push("client_id");
    }
    if open("private_key", &current.private_key_sealed).as_deref() != Some(new.private_key.trim()) {
        changed.push("private_key");
    }
    if open("webhook_secret", &current.webhook_secret_sealed).as_deref() != Some(new.webhook_secret.as_str()) {
        changed.push("webhook_secret");
    }
    if current.ca_bundle != new.ca_bundle {
        changed.push("ca_bundle");
    }
    if changed.is_empty() {
        return Ok(changed);
    }
    let now = now_ms();
    let rotated = changed.iter().any(|f| matches!(*f, "private_key" | "webhook_secret"));
    sqlx::query(
        "UPDATE git_connections SET api_url = $2, app_id = $3, client_id = $4, private_key_sealed = $5, \
         webhook_secret_sealed = $6, ca_bundle = $7, updated_at = $8, \
         secrets_rotated_at = CASE WHEN $9 = 1 THEN $8 ELSE secrets_rotated_at END, from_config = 1 WHERE name = $1",
    )
    .bind(name)
    .bind(&api_url)
    .bind(&new.app_id)
    .bind(&new.client_id)
    .bind(keys.seal(&purpose(name, "private_key"), new.private_key.trim()))
    .bind(keys.seal(&purpose(name, "webhook_secret"), &new.webhook_secret))
    .bind(&new.ca_bundle)
    .bind(now)
    .bind(i64::from(rotated))
    .execute(&mut *conn)
    .await?;
    if changed.contains(&"api_url") {
        super::logins::forget_connection(conn, name).await?;
    }
    Ok(changed)
}

/// The names of the connections the configuration file declared, as stored.
pub(crate) async fn configured_names(conn: &mut AnyConnection) -> Result<Vec<String>> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT name FROM git_connections WHERE from_config <> 0 ORDER BY name").fetch_all(conn).await?;
    Ok(rows.into_iter().map(|(n,)| n).collect())
}

/// Whether connection `name` exists and was made in the console or the API.
pub(crate) async fn made_here(conn: &mut AnyConnection, name: &str) -> Result<bool> {
    Ok(row(conn, name).await?.is_some_and(|r| r.from_config == 0))
}

/// Delete a connection the configuration file no longer declares, unless projects use it.
pub(crate) async fn remove_configured(conn: &mut AnyConnection, name: &str) -> Result<bool> {
    if !users_of(conn, name).await?.is_empty() {
        return Ok(false);
    }
    sqlx::query("DELETE FROM git_connections WHERE name = $1 AND from_config <> 0")
        .bind(name)
        .execute(&mut *conn)
        .await?;
    super::logins::forget_connection(conn, name).await?;
    Ok(true)
}

/// Change a connection; a new private key or webhook secret is a rotation. Only the columns
/// that change are written, in one statement (concurrent changes of different fields both
/// stay). Where the key is used — the host, the CAs trusted for it — changes only with the key
/// given again: whoever redirects it must hold it.
pub async fn update(
    conn: &mut AnyConnection,
    keys: &Keys,
    _admin: &OrgGrant<Administer>,
    name: &str,
    change: &ConnectionChange,
) -> Result<Connection> {
    let current = row(conn, name).await?.ok_or(ConnectionError::NotFound)?;
    if current.from_config != 0 {
        return Err(ConnectionError::Managed(name.to_owned()));
    }
    let provider = Provider::parse(&current.provider).unwrap_or(Provider::GitHub);
    if (change.api_url.is_some() || change.ca_bundle.is_some()) && change.private_key.is_none() {
        return Err(invalid(
            "private_key",
            "is required with a new api_url or ca_bundle: the key goes only where it was given for",
        ));
    }
    let mut sets: Vec<(&str, Option<String>)> = vec![];
    if let Some(u) = &change.api_url {
        sets.push(("api_url", Some(api_urls(provider, u)?.0)));
    }
    if let Some(a) = &change.app_id {
        check_app_id(a)?;
        sets.push(("app_id", Some(a.clone())));
    }
    if let Some(c) = &change.client_id {
        if let Some(c) = c {
            check_client_id(c)?;
        }
        sets.push(("client_id", c.clone()));
    }
    if let Some(pem) = &change.private_key {
        parse_private_key(pem).map_err(|m| invalid("private_key", m))?;
        sets.push(("private_key_sealed", Some(keys.seal(&purpose(name, "private_key"), pem.trim()))));
    }
    if let Some(secret) = &change.webhook_secret {
        check_webhook_secret(secret)?;
        sets.push(("webhook_secret_sealed", Some(keys.seal(&purpose(name, "webhook_secret"), secret))));
    }
    if let Some(bundle) = &change.ca_bundle {
        if let Some(pem) = bundle {
            check_ca_bundle(pem)?;
        }
        sets.push(("ca_bundle", bundle.clone()));
    }
    let now = now_ms();
    let mut sql = String::from("UPDATE git_connections SET updated_at = $2");
    if change.rotates() {
        sql.push_str(", secrets_rotated_at = $2");
    }
    for (i, (column, _)) in sets.iter().enumerate() {
        sql.push_str(&format!(", {column} = ${}", i + 3));
    }
    sql.push_str(" WHERE name = $1");
    let mut query = sqlx::query(&sql).bind(name).bind(now);
    for (_, value) in sets {
        query = query.bind(value);
    }
    query.execute(&mut *conn).await?;
    if change.api_url.is_some() {
        // Another GitHub, maybe: its account ids are other people.
        super::logins::forget_connection(conn, name).await?;
    }
    get(conn, name).await
}

/// The projects that use a connection (their slugs), archived ones included.
pub async fn users_of(conn: &mut AnyConnection, name: &str) -> Result<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as("SELECT slug FROM projects WHERE git_connection = $1 ORDER BY slug")
        .bind(name)
        .fetch_all(conn)
        .await?;
    Ok(rows.into_iter().map(|(n,)| n).collect())
}

/// Delete a connection no project uses: checked first, to name them, and held by the
/// database's foreign key against a project assigned meanwhile.
pub async fn delete(conn: &mut AnyConnection, _admin: &OrgGrant<Administer>, name: &str) -> Result<()> {
    if row(conn, name).await?.ok_or(ConnectionError::NotFound)?.from_config != 0 {
        return Err(ConnectionError::Managed(name.to_owned()));
    }
    let users = users_of(conn, name).await?;
    if !users.is_empty() {
        return Err(ConnectionError::InUse(users));
    }
    match sqlx::query("DELETE FROM git_connections WHERE name = $1").bind(name).execute(&mut *conn).await {
        // Assigned meanwhile (the transaction is spoilt on PostgreSQL: no further query).
        Err(e) if is_foreign_key_violation(&e) => Err(ConnectionError::InUse(vec![])),
        Err(e) => Err(e.into()),
        Ok(_) => Ok(super::logins::forget_connection(conn, name).await?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["github", "github-corp", "ghes2", "0a"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "GitHub", "-x", "a_b", "a b", "a/b", &"x".repeat(64), "é"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn github_and_enterprise_server_urls() {
        let gh = |u: &str| api_urls(Provider::GitHub, u);
        let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(
            gh("https://api.github.com").unwrap(),
            pair("https://api.github.com", "https://api.github.com/graphql")
        );
        assert_eq!(
            gh("https://api.github.com/").unwrap(),
            pair("https://api.github.com", "https://api.github.com/graphql")
        );
        assert_eq!(
            gh("https://ghe.corp.example/api/v3/").unwrap(),
            pair("https://ghe.corp.example/api/v3", "https://ghe.corp.example/api/graphql")
        );
        assert_eq!(
            gh("http://127.0.0.1:8080/api/v3").unwrap(),
            pair("http://127.0.0.1:8080/api/v3", "http://127.0.0.1:8080/api/graphql")
        );
        for bad in [
            "http://ghe.corp.example/api/v3",
            "https://github.com",
            "https://ghe.corp.example",
            "https://ghe.corp.example/api/v4",
            "https://api.github.com/api/v3",
            "https://user:pw@ghe.corp.example/api/v3",
            "https://ghe.corp.example/api/v3?x=1",
            "ftp://ghe.corp.example/api/v3",
            "not a url",
        ] {
            assert!(matches!(gh(bad), Err(ConnectionError::Invalid { field: "api_url", .. })), "{bad}");
        }
    }

    #[test]
    fn secrets_never_print() {
        let s = Secrets { private_key_pem: "KEY".into(), webhook_secret: "SECRET".into(), ca_bundle: None };
        assert_eq!(format!("{s:?}"), "Secrets(redacted)");
    }
}
