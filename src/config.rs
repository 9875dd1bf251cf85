//! Configuration: built-in defaults < TOML file (`ARNO_CONFIG`) < `ARNO_*` environment.
//!
//! Every setting is declared once in [`SETTINGS`]: its TOML key, its environment variable,
//! whether it is a secret (then `X_FILE` / `x_file` may name a file holding the value) and its
//! default. Loading produces a typed [`Config`] plus the resolved value and source of every
//! setting, so `arno config check` can show exactly what is in effect without printing secrets.

pub mod fields;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

/// A secret string: never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself; call sites that use this are the only places a secret leaves.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Where the effective value of a setting came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Default,
    File,
    Env,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Default => "default",
            Source::File => "config file",
            Source::Env => "environment",
        })
    }
}

struct Setting {
    /// Dotted TOML key (`s3.endpoint` is `[s3] endpoint = …`).
    key: &'static str,
    env: &'static str,
    secret: bool,
}

const fn s(key: &'static str, env: &'static str) -> Setting {
    Setting { key, env, secret: false }
}
const fn secret(key: &'static str, env: &'static str) -> Setting {
    Setting { key, env, secret: true }
}

/// Every setting Arno reads. Defaults that depend on other settings are computed in `build`.
const SETTINGS: &[Setting] = &[
    s("data_dir", "ARNO_DATA_DIR"),
    s("listen", "ARNO_LISTEN"),
    s("metrics_listen", "ARNO_METRICS_LISTEN"),
    s("public_url", "ARNO_PUBLIC_URL"),
    secret("database_url", "ARNO_DATABASE_URL"),
    s("database_max_connections", "ARNO_DATABASE_MAX_CONNECTIONS"),
    s("storage_url", "ARNO_STORAGE_URL"),
    s("s3.endpoint", "ARNO_S3_ENDPOINT"),
    s("s3.region", "ARNO_S3_REGION"),
    secret("s3.access_key_id", "ARNO_S3_ACCESS_KEY_ID"),
    secret("s3.secret_access_key", "ARNO_S3_SECRET_ACCESS_KEY"),
    secret("secret_key", "ARNO_SECRET_KEY"),
    s("log", "ARNO_LOG"),
    s("session.idle_timeout", "ARNO_SESSION_IDLE_TIMEOUT"),
    s("session.absolute_timeout", "ARNO_SESSION_ABSOLUTE_TIMEOUT"),
    s("login.max_failures_per_account", "ARNO_LOGIN_MAX_FAILURES_PER_ACCOUNT"),
    s("login.max_failures_per_ip", "ARNO_LOGIN_MAX_FAILURES_PER_IP"),
    s("login.max_failures_account_wide", "ARNO_LOGIN_MAX_FAILURES_ACCOUNT_WIDE"),
    s("trusted_proxies", "ARNO_TRUSTED_PROXIES"),
    s("max_body_bytes", "ARNO_MAX_BODY_BYTES"),
    s("shutdown_timeout", "ARNO_SHUTDOWN_TIMEOUT"),
    s("audit.retention", "ARNO_AUDIT_RETENTION"),
    s("audit.stream_urls", "ARNO_AUDIT_STREAM_URLS"),
    secret("audit.stream_token", "ARNO_AUDIT_STREAM_TOKEN"),
    s("audit.stream_max_lag", "ARNO_AUDIT_STREAM_MAX_LAG"),
    s("git.local_roots", "ARNO_GIT_LOCAL_ROOTS"),
    s("git.onboarding_archive_after", "ARNO_GIT_ONBOARDING_ARCHIVE_AFTER"),
    s("projects.quota", "ARNO_PROJECTS_QUOTA"),
    s("auth.local_login", "ARNO_AUTH_LOCAL_LOGIN"),
    s("scim.provider", "ARNO_SCIM_PROVIDER"),
    s("writeback.debounce_secs", "ARNO_WRITEBACK_DEBOUNCE_SECS"),
    s("jobs.retry_base", "ARNO_JOBS_RETRY_BASE"),
    s("jobs.max_attempts", "ARNO_JOBS_MAX_ATTEMPTS"),
    s("workflow.max_message_bytes", "ARNO_WORKFLOW_MAX_MESSAGE_BYTES"),
    s("workflow.max_document_bytes", "ARNO_WORKFLOW_MAX_DOCUMENT_BYTES"),
    s("workflow.awareness_per_second", "ARNO_WORKFLOW_AWARENESS_PER_SECOND"),
    s("workflow.backup_retention", "ARNO_WORKFLOW_BACKUP_RETENTION"),
    s("workflow.snapshot_interval", "ARNO_WORKFLOW_SNAPSHOT_INTERVAL"),
];

const CONFIG_ENV: &str = "ARNO_CONFIG";
const DEFAULT_CONFIG_FILE: &str = "/etc/arno/arno.toml";

/// An invalid configuration, naming the offending key the way the operator spelled it.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

fn err(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError { key: key.into(), message: message.into() }
}

#[derive(Clone, Debug)]
pub struct S3Config {
    pub endpoint: Option<Url>,
    pub region: String,
    pub access_key_id: Option<Secret>,
    pub secret_access_key: Option<Secret>,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub public_url: Url,
    pub database_url: Secret,
    pub database_max_connections: u32,
    pub storage_url: Url,
    pub s3: S3Config,
    /// `None`: generated into `{data_dir}/secret.key` on first start.
    pub secret_key: Option<Secret>,
    pub log: String,
    pub session_idle_timeout: Duration,
    pub session_absolute_timeout: Duration,
    /// Failed sign-ins for one account from one client address (the pair) before it waits.
    pub login_max_failures_per_account: u32,
    /// Failed sign-ins from one client address, whatever the accounts.
    pub login_max_failures_per_ip: u32,
    /// Failed sign-ins for one account from all addresses together: a backstop far above the
    /// pair limit, so one guesser cannot keep the owner out (see auth/throttle.rs).
    pub login_max_failures_account_wide: u32,
    /// Peers whose `X-Forwarded-For` is believed (a load balancer, an ingress).
    pub trusted_proxies: Vec<IpNet>,
    pub max_body_bytes: usize,
    pub shutdown_timeout: Duration,
    /// How long audit records are kept before the retention purge may remove them.
    pub audit_retention: Duration,
    /// SIEM endpoints that receive every audit record as JSON.
    pub audit_stream_urls: Vec<Url>,
    /// Sent with every streamed record so the receiver can verify the sender.
    pub audit_stream_token: Option<Secret>,
    /// A stream further behind than this makes `/ready` say `degraded`.
    pub audit_stream_max_lag: Duration,
    /// Folders under which Admins may connect existing repositories on this machine (canonical).
    pub git_local_roots: Vec<PathBuf>,
    /// The default size limit of one project, in bytes.
    pub projects_quota: u64,
    /// Password sign-in on `/login` (turn off once SSO works; the CLI can still create tokens).
    pub local_login: bool,
    /// OpenID Connect identity providers (`[[oidc]]` tables of the file).
    pub oidc: Vec<crate::auth::oidc::config::OidcProviderConfig>,
    /// Git connections declared in the file (`[[git.connections]]`), read-only elsewhere.
    pub git_connections: Vec<crate::git::connections_config::ConfiguredConnection>,
    /// Whose `org_roles` / `project_roles` tables SCIM groups map through (an `[[oidc]]` id).
    pub scim_provider: Option<String>,
    /// Quiet time after a user's last save before it is committed to their session branch.
    pub writeback_debounce: Duration,
    /// A GitHub project still pending setup this long after its onboarding pull request was
    /// opened (unmerged) is archived.
    pub git_onboarding_archive_after: Duration,
    /// The first retry of a failed job waits this long; each further one twice as long (≤ 10 min).
    pub jobs_retry_base: Duration,
    /// After this many attempts a job is failed (and says why).
    pub jobs_max_attempts: u32,
    /// The largest workflow WebSocket message accepted (larger closes the connection).
    pub workflow_max_message_bytes: u64,
    /// The largest a workflow document may grow (encoded).
    pub workflow_max_document_bytes: u64,
    /// Presence updates per second one workflow connection may send.
    pub workflow_awareness_per_second: u32,
    /// How long compaction snapshots are kept in the object store (the newest always is).
    pub workflow_backup_retention: Duration,
    /// A changing workflow document gets a periodic snapshot this often.
    pub workflow_snapshot_interval: Duration,
}

/// One resolved setting, for `arno config check`.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub key: &'static str,
    pub env: &'static str,
    /// Display form: secrets are redacted.
    pub shown: String,
    pub source: Source,
}

#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub config_file: Option<PathBuf>,
    pub resolved: Vec<Resolved>,
    pub warnings: Vec<String>,
}

impl Config {
    /// Load from the process environment (and the TOML file it names).
    pub fn from_process_env() -> Result<Loaded, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| k.starts_with("ARNO_"))
            .collect();
        Self::load(&env)
    }

    /// Load from an explicit environment map: tests and the CLI never share process state.
    pub fn load(env: &BTreeMap<String, String>) -> Result<Loaded, ConfigError> {
        let mut warnings = Vec::new();
        let (config_file, mut file_values) = read_config_file(env)?;
        // Arrays of tables are not flat settings: identity providers are parsed on their own.
        let oidc = match file_values.as_mut().and_then(|t| t.remove("oidc")) {
            Some(v) => crate::auth::oidc::config::parse(&v, &config_file_name(&config_file))?,
            None => vec![],
        };
        let git_connections = match file_values
            .as_mut()
            .and_then(|t| t.get_mut("git"))
            .and_then(|g| g.as_table_mut())
            .and_then(|g| g.remove("connections"))
        {
            Some(v) => crate::git::connections_config::parse(&v, &config_file_name(&config_file))?,
            None => vec![],
        };
        let mut file_keys: BTreeMap<String, String> = BTreeMap::new();
        if let Some(table) = &file_values {
            flatten("", table, &mut file_keys, &config_file_name(&config_file))?;
        }

        let mut values: BTreeMap<&'static str, (String, Source)> = BTreeMap::new();
        for setting in SETTINGS {
            if let Some(v) = pick(setting, env, &file_keys)? {
                values.insert(setting.key, v);
            }
        }

        for name in env.keys() {
            if !name.starts_with("ARNO_") || name == CONFIG_ENV {
                continue;
            }
            let known =
                SETTINGS.iter().any(|s| s.env == name || (s.secret && name.strip_suffix("_FILE") == Some(s.env)));
            if !known {
                warnings.push(format!("unknown environment variable {name} is ignored"));
            }
        }
        for key in file_keys.keys() {
            let known = SETTINGS.iter().any(|s| s.key == key || (s.secret && key.strip_suffix("_file") == Some(s.key)));
            if !known {
                warnings.push(format!("unknown key `{key}` in {} is ignored", config_file_name(&config_file)));
            }
        }

        let mut config = build(&values)?;
        if let Some(id) = &config.scim_provider
            && !oidc.iter().any(|p| &p.id == id)
        {
            let key = if values.get("scim.provider").is_some_and(|(_, s)| *s == Source::File) {
                "scim.provider"
            } else {
                "ARNO_SCIM_PROVIDER"
            };
            return Err(err(key, format!("`{id}` is not the id of an [[oidc]] provider")));
        }
        config.oidc = oidc;
        config.git_connections = git_connections;
        let resolved = SETTINGS
            .iter()
            .map(|s| {
                let (raw, source) =
                    values.get(s.key).cloned().unwrap_or_else(|| (effective_default(s.key, &config), Source::Default));
                let shown = if s.key == "database_url" {
                    redact_url_password(&raw)
                } else if s.secret && source != Source::Default {
                    "[redacted]".to_owned()
                } else {
                    raw
                };
                Resolved { key: s.key, env: s.env, shown, source }
            })
            .collect();
        Ok(Loaded { config, config_file, resolved, warnings })
    }

    /// A configuration for tests and embedding: defaults rooted at `data_dir`.
    pub fn for_data_dir(data_dir: &Path) -> Config {
        let mut env = BTreeMap::new();
        env.insert("ARNO_DATA_DIR".to_owned(), data_dir.display().to_string());
        env.insert("ARNO_CONFIG".to_owned(), String::new());
        Self::load(&env).expect("defaults are valid").config
    }

    pub fn is_https(&self) -> bool {
        self.public_url.scheme() == "https"
    }

    /// The public base URL without a trailing slash, for building links.
    pub fn public_base(&self) -> String {
        self.public_url.as_str().trim_end_matches('/').to_owned()
    }
}

fn config_file_name(path: &Option<PathBuf>) -> String {
    path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "the config file".into())
}

/// `ARNO_CONFIG` names the file; unset means `/etc/arno/arno.toml` if it exists; empty means none.
fn read_config_file(env: &BTreeMap<String, String>) -> Result<(Option<PathBuf>, Option<toml::Table>), ConfigError> {
    let path = match env.get(CONFIG_ENV) {
        Some(p) if p.is_empty() => return Ok((None, None)),
        Some(p) => PathBuf::from(p),
        None => {
            let p = PathBuf::from(DEFAULT_CONFIG_FILE);
            if !p.exists() {
                return Ok((None, None));
            }
            p
        }
    };
    let text =
        std::fs::read_to_string(&path).map_err(|e| err(CONFIG_ENV, format!("cannot read {}: {e}", path.display())))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| err(CONFIG_ENV, format!("{} is not valid TOML: {e}", path.display())))?;
    Ok((Some(path), Some(table)))
}

fn flatten(
    prefix: &str,
    table: &toml::Table,
    out: &mut BTreeMap<String, String>,
    file: &str,
) -> Result<(), ConfigError> {
    for (k, v) in table {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        let text = match v {
            toml::Value::Table(t) => {
                flatten(&key, t, out, file)?;
                continue;
            }
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => {
                let mut parts = Vec::new();
                for item in items {
                    match item {
                        toml::Value::String(s) => parts.push(s.clone()),
                        _ => return Err(err(&key, format!("in {file}: expected a list of strings"))),
                    }
                }
                parts.join(",")
            }
            other => {
                return Err(err(&key, format!("in {file}: unsupported value type {}", other.type_str())));
            }
        };
        out.insert(key, text);
    }
    Ok(())
}

/// The effective raw value of one setting: env beats file; in each layer, `X` and `X_FILE`
/// are mutually exclusive.
fn pick(
    setting: &Setting,
    env: &BTreeMap<String, String>,
    file: &BTreeMap<String, String>,
) -> Result<Option<(String, Source)>, ConfigError> {
    let env_file = format!("{}_FILE", setting.env);
    let key_file = format!("{}_file", setting.key);
    let layers = [
        (Source::Env, setting.env.to_owned(), env.get(setting.env), env_file.clone(), env.get(&env_file)),
        (Source::File, setting.key.to_owned(), file.get(setting.key), key_file.clone(), file.get(&key_file)),
    ];
    for (source, name, direct, file_name, via_file) in layers {
        let via_file = if setting.secret { via_file } else { None };
        match (direct, via_file) {
            (Some(_), Some(_)) => {
                return Err(err(&name, format!("set either {name} or {file_name}, not both")));
            }
            (Some(v), None) => return Ok(Some((v.clone(), source))),
            (None, Some(path)) => {
                let text =
                    std::fs::read_to_string(path).map_err(|e| err(&file_name, format!("cannot read {path}: {e}")))?;
                let value = text.trim_end_matches(['\n', '\r']).to_owned();
                if value.is_empty() {
                    return Err(err(&file_name, format!("{path} is empty")));
                }
                return Ok(Some((value, source)));
            }
            (None, None) => {}
        }
    }
    Ok(None)
}

fn effective_default(key: &str, c: &Config) -> String {
    match key {
        "data_dir" => c.data_dir.display().to_string(),
        "listen" => c.listen.to_string(),
        "metrics_listen" => c.metrics_listen.to_string(),
        "public_url" => c.public_url.to_string(),
        "database_url" => c.database_url.expose().to_owned(),
        "database_max_connections" => c.database_max_connections.to_string(),
        "storage_url" => c.storage_url.to_string(),
        "s3.region" => c.s3.region.clone(),
        "secret_key" => format!("generated into {}", c.data_dir.join("secret.key").display()),
        "log" => c.log.clone(),
        "session.idle_timeout" => humantime::format_duration(c.session_idle_timeout).to_string(),
        "session.absolute_timeout" => humantime::format_duration(c.session_absolute_timeout).to_string(),
        "login.max_failures_per_account" => c.login_max_failures_per_account.to_string(),
        "login.max_failures_per_ip" => c.login_max_failures_per_ip.to_string(),
        "login.max_failures_account_wide" => c.login_max_failures_account_wide.to_string(),
        "max_body_bytes" => c.max_body_bytes.to_string(),
        "shutdown_timeout" => humantime::format_duration(c.shutdown_timeout).to_string(),
        "audit.retention" => humantime::format_duration(c.audit_retention).to_string(),
        "audit.stream_max_lag" => humantime::format_duration(c.audit_stream_max_lag).to_string(),
        "git.local_roots" => "(none)".to_owned(),
        "projects.quota" => format!("{} bytes", c.projects_quota),
        "auth.local_login" => c.local_login.to_string(),
        "writeback.debounce_secs" => c.writeback_debounce.as_secs().to_string(),
        "git.onboarding_archive_after" => humantime::format_duration(c.git_onboarding_archive_after).to_string(),
        "jobs.retry_base" => humantime::format_duration(c.jobs_retry_base).to_string(),
        "jobs.max_attempts" => c.jobs_max_attempts.to_string(),
        "workflow.max_message_bytes" => format!("{} bytes", c.workflow_max_message_bytes),
        "workflow.max_document_bytes" => format!("{} bytes", c.workflow_max_document_bytes),
        "workflow.awareness_per_second" => c.workflow_awareness_per_second.to_string(),
        "workflow.backup_retention" => humantime::format_duration(c.workflow_backup_retention).to_string(),
        "workflow.snapshot_interval" => humantime::format_duration(c.workflow_snapshot_interval).to_string(),
        _ => "(unset)".to_owned(),
    }
}

/// Show a database URL with its password replaced.
pub fn redact_url_password(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("[redacted]"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "[unparseable, redacted]".to_owned(),
    }
}

fn build(values: &BTreeMap<&'static str, (String, Source)>) -> Result<Config, ConfigError> {
    let env_of = |key: &str| SETTINGS.iter().find(|s| s.key == key).map(|s| s.env).unwrap_or("?");
    // Errors name the variable if it came from the environment, else the TOML key.
    let name = |key: &'static str| -> String {
        match values.get(key) {
            Some((_, Source::File)) => key.to_owned(),
            _ => env_of(key).to_owned(),
        }
    };
    let get = |key: &'static str| values.get(key).map(|(v, _)| v.as_str());

    let data_dir = PathBuf::from(get("data_dir").unwrap_or("./arno-data"));
    if data_dir.as_os_str().is_empty() {
        return Err(err(name("data_dir"), "must not be empty"));
    }
    let data_abs = std::path::absolute(&data_dir).map_err(|e| err(name("data_dir"), format!("cannot resolve: {e}")))?;

    let addr = |key: &'static str, default: &str| -> Result<SocketAddr, ConfigError> {
        let raw = get(key).unwrap_or(default);
        raw.parse().map_err(|_| {
            err(name(key), format!("`{raw}` is not a listen address (expected IP:PORT, e.g. 0.0.0.0:8080)"))
        })
    };
    let listen = addr("listen", "127.0.0.1:8080")?;
    let metrics_listen = addr("metrics_listen", "127.0.0.1:9464")?;
    if listen == metrics_listen {
        return Err(err(name("metrics_listen"), "must differ from the main listen address"));
    }

    let public_url = match get("public_url") {
        Some(raw) => {
            let u = Url::parse(raw).map_err(|e| err(name("public_url"), format!("`{raw}` is not a URL: {e}")))?;
            if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
                return Err(err(name("public_url"), "must be an http:// or https:// URL with a host"));
            }
            if u.query().is_some() || u.fragment().is_some() {
                return Err(err(name("public_url"), "must not have a query or fragment"));
            }
            // Pages link with root-relative paths, so Arno must own the root of its host.
            if u.path() != "/" {
                return Err(err(
                    name("public_url"),
                    "must not have a path: serve Arno at the root of its own host name",
                ));
            }
            u
        }
        None => Url::parse(&format!("http://{listen}/")).expect("socket address forms a URL"),
    };

    let database_url = match get("database_url") {
        Some(raw) => {
            let scheme = raw.split(':').next().unwrap_or_default();
            if !matches!(scheme, "sqlite" | "postgres" | "postgresql") {
                return Err(err(name("database_url"), "must start with sqlite:// or postgres://"));
            }
            if scheme != "sqlite" {
                Url::parse(raw).map_err(|e| err(name("database_url"), format!("not a valid URL: {e}")))?;
            }
            raw.to_owned()
        }
        None => format!("sqlite://{}", data_abs.join("arno.db").display()),
    };
    let database_max_connections = parse_num(get("database_max_connections"), 10, 1, 1000)
        .map_err(|m| err(name("database_max_connections"), m))?;

    let storage_url = match get("storage_url") {
        Some(raw) => Url::parse(raw).map_err(|e| err(name("storage_url"), format!("`{raw}` is not a URL: {e}")))?,
        None => Url::from_directory_path(data_abs.join("objects"))
            .map_err(|_| err(name("data_dir"), "cannot form a file:// URL from it"))?,
    };
    match storage_url.scheme() {
        "file" => {
            if storage_url.to_file_path().is_err() {
                return Err(err(name("storage_url"), "file:// URL must hold an absolute path"));
            }
        }
        "s3" => {
            if storage_url.host_str().unwrap_or_default().is_empty() {
                return Err(err(name("storage_url"), "s3:// URL must name a bucket: s3://bucket/prefix"));
            }
        }
        other => return Err(err(name("storage_url"), format!("unsupported scheme `{other}` (use file:// or s3://)"))),
    }
    let endpoint = match get("s3.endpoint") {
        Some(raw) => {
            let u = Url::parse(raw).map_err(|e| err(name("s3.endpoint"), format!("`{raw}` is not a URL: {e}")))?;
            if !matches!(u.scheme(), "http" | "https") {
                return Err(err(name("s3.endpoint"), "must be an http:// or https:// URL"));
            }
            Some(u)
        }
        None => None,
    };
    let s3 = S3Config {
        endpoint,
        region: get("s3.region").unwrap_or("us-east-1").to_owned(),
        access_key_id: get("s3.access_key_id").map(Secret::new),
        secret_access_key: get("s3.secret_access_key").map(Secret::new),
    };
    if s3.access_key_id.is_some() != s3.secret_access_key.is_some() {
        return Err(err(name("s3.secret_access_key"), "S3 access key id and secret access key must be set together"));
    }

    let secret_key = match get("secret_key") {
        Some(k) if k.len() < 32 => {
            return Err(err(name("secret_key"), "must be at least 32 characters (e.g. `openssl rand -base64 32`)"));
        }
        Some(k) => Some(Secret::new(k)),
        None => None,
    };

    let log = get("log").unwrap_or("info").to_owned();
    tracing_subscriber::EnvFilter::try_new(&log)
        .map_err(|e| err(name("log"), format!("not a valid log filter: {e}")))?;

    let duration = |key: &'static str, default: &str| -> Result<Duration, ConfigError> {
        let raw = get(key).unwrap_or(default);
        let d = humantime::parse_duration(raw)
            .map_err(|e| err(name(key), format!("`{raw}` is not a duration (e.g. 8h, 30m): {e}")))?;
        if d.is_zero() {
            return Err(err(name(key), "must be greater than zero"));
        }
        Ok(d)
    };
    let session_idle_timeout = duration("session.idle_timeout", "8h")?;
    let session_absolute_timeout = duration("session.absolute_timeout", "7d")?;
    if session_idle_timeout > session_absolute_timeout {
        return Err(err(name("session.idle_timeout"), "must not exceed session.absolute_timeout"));
    }
    let shutdown_timeout = duration("shutdown_timeout", "10s")?;
    let audit_retention = duration("audit.retention", "180d")?;
    if audit_retention < Duration::from_secs(86_400) {
        return Err(err(name("audit.retention"), "must be at least 1 day"));
    }

    let login_max_failures_per_account: u32 = parse_num(get("login.max_failures_per_account"), 5, 1, 1000)
        .map_err(|m| err(name("login.max_failures_per_account"), m))?;
    let login_max_failures_per_ip = parse_num(get("login.max_failures_per_ip"), 30, 1, 100_000)
        .map_err(|m| err(name("login.max_failures_per_ip"), m))?;
    let login_max_failures_account_wide = parse_num(
        get("login.max_failures_account_wide"),
        login_max_failures_per_account.saturating_mul(10),
        1,
        1_000_000,
    )
    .map_err(|m| err(name("login.max_failures_account_wide"), m))?;
    if login_max_failures_account_wide < login_max_failures_per_account {
        return Err(err(
            name("login.max_failures_account_wide"),
            format!(
                "must be at least login.max_failures_per_account ({login_max_failures_per_account}); \
                 a lower account-wide limit lets anyone keep the account's owner out"
            ),
        ));
    }
    let max_body_bytes = parse_num(get("max_body_bytes"), 10 * 1024 * 1024, 1024, 1 << 30)
        .map_err(|m| err(name("max_body_bytes"), m))?;

    let mut audit_stream_urls = Vec::new();
    for part in get("audit.stream_urls").unwrap_or("").split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let u = Url::parse(part).map_err(|e| err(name("audit.stream_urls"), format!("`{part}` is not a URL: {e}")))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(err(name("audit.stream_urls"), "must be http:// or https:// URLs"));
        }
        audit_stream_urls.push(u);
    }
    let audit_stream_token = get("audit.stream_token").map(Secret::new);
    let audit_stream_max_lag = duration("audit.stream_max_lag", "5m")?;
    if !audit_stream_urls.is_empty() && audit_stream_token.is_none() {
        return Err(err(name("audit.stream_token"), "is required when audit.stream_urls is set"));
    }

    // Colon-separated like PATH; each must exist, and is canonicalized so that symlinks cannot
    // smuggle a repository path out from under it.
    let mut git_local_roots = Vec::new();
    for part in get("git.local_roots").unwrap_or("").split(':').map(str::trim).filter(|p| !p.is_empty()) {
        let path = Path::new(part);
        if !path.is_absolute() {
            return Err(err(name("git.local_roots"), format!("`{part}` is not an absolute path")));
        }
        let canonical = path
            .canonicalize()
            .map_err(|e| err(name("git.local_roots"), format!("`{part}` cannot be resolved: {e}")))?;
        git_local_roots.push(canonical);
    }
    let local_login = match get("auth.local_login").map(str::trim) {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => return Err(err(name("auth.local_login"), format!("`{other}` must be true or false"))),
    };
    let writeback_debounce = Duration::from_secs(
        parse_num(get("writeback.debounce_secs"), 30, 0, 86_400)
            .map_err(|m| err(name("writeback.debounce_secs"), m))?,
    );
    let jobs_retry_base = duration("jobs.retry_base", "5s")?;
    let git_onboarding_archive_after = duration("git.onboarding_archive_after", "30days")?;
    let jobs_max_attempts =
        parse_num(get("jobs.max_attempts"), 8, 1, 100).map_err(|m| err(name("jobs.max_attempts"), m))?;
    let bytes_setting = |key: &'static str, default: u64, min: u64| -> Result<u64, ConfigError> {
        let v = match get(key) {
            None => default,
            Some(raw) => parse_bytes(raw).map_err(|m| err(name(key), m))?,
        };
        if v < min {
            return Err(err(name(key), format!("must be at least {min} bytes")));
        }
        Ok(v)
    };
    let workflow_max_message_bytes = bytes_setting("workflow.max_message_bytes", 8 << 20, 64 << 10)?;
    let workflow_max_document_bytes = bytes_setting("workflow.max_document_bytes", 64 << 20, 1 << 20)?;
    let workflow_awareness_per_second = parse_num(get("workflow.awareness_per_second"), 30, 1, 1000)
        .map_err(|m| err(name("workflow.awareness_per_second"), m))?;
    let workflow_backup_retention = duration("workflow.backup_retention", "30d")?;
    let workflow_snapshot_interval = duration("workflow.snapshot_interval", "1h")?;
    let projects_quota = match get("projects.quota") {
        None => 1 << 30,
        Some(raw) => parse_bytes(raw).map_err(|m| err(name("projects.quota"), m))?,
    };

    let mut trusted_proxies = Vec::new();
    for part in get("trusted_proxies").unwrap_or("").split(',').map(str::trim).filter(|p| !p.is_empty()) {
        trusted_proxies.push(
            part.parse::<IpNet>()
                .map_err(|_| err(name("trusted_proxies"), format!("`{part}` is not an IP address or CIDR range")))?,
        );
    }

    Ok(Config {
        data_dir,
        listen,
        metrics_listen,
        public_url,
        database_url: Secret::new(database_url),
        database_max_connections,
        storage_url,
        s3,
        secret_key,
        log,
        session_idle_timeout,
        session_absolute_timeout,
        login_max_failures_per_account,
        login_max_failures_per_ip,
        login_max_failures_account_wide,
        trusted_proxies,
        max_body_bytes,
        shutdown_timeout,
        audit_retention,
        audit_stream_urls,
        audit_stream_token,
        audit_stream_max_lag,
        git_local_roots,
        projects_quota,
        local_login,
        oidc: vec![],
        git_connections: vec![],
        scim_provider: get("scim.provider").map(str::to_owned).filter(|s| !s.is_empty()),
        writeback_debounce,
        jobs_retry_base,
        git_onboarding_archive_after,
        jobs_max_attempts,
        workflow_max_message_bytes,
        workflow_max_document_bytes,
        workflow_awareness_per_second,
        workflow_backup_retention,
        workflow_snapshot_interval,
    })
}

/// `1073741824`, `500MiB`, `1GiB`, `10GB`: bytes, with binary (KiB, MiB, GiB, TiB) or decimal
/// (KB, MB, GB, TB) units.
fn parse_bytes(raw: &str) -> Result<u64, String> {
    let raw = raw.trim();
    let digits = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(digits);
    let number: u64 = number.parse().map_err(|_| format!("`{raw}` is not a size (e.g. 1GiB, 500MiB)"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        other => return Err(format!("unknown unit `{other}` (use KiB, MiB, GiB, TiB, KB, MB, GB or TB)")),
    };
    let bytes = number.checked_mul(factor).ok_or_else(|| format!("`{raw}` is too large"))?;
    if bytes < 1 << 20 {
        return Err(format!("`{raw}` is less than 1MiB"));
    }
    Ok(bytes)
}

fn parse_num<T>(raw: Option<&str>, default: T, min: T, max: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
{
    let Some(raw) = raw else { return Ok(default) };
    let v: T = raw.trim().parse().map_err(|_| format!("`{raw}` is not a whole number"))?;
    if v < min || v > max {
        return Err(format!("{v} is out of range ({min}..={max})"));
    }
    Ok(v)
}

/// An IP network (`10.0.0.0/8`, `::1`): small enough not to need a crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: std::net::IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr::{V4, V6};
        match (self.addr, ip) {
            (V4(net), V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (V6(net), V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            (V6(net), V4(ip)) => net.to_ipv4_mapped() == Some(ip) && self.prefix == 128,
            (V4(_), V6(ip)) => ip.to_ipv4_mapped().is_some_and(|v4| self.contains(v4.into())),
        }
    }
}

impl std::str::FromStr for IpNet {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: std::net::IpAddr = addr.parse().map_err(|_| ())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().map_err(|_| ())?,
            None => max,
        };
        if prefix > max {
            return Err(());
        }
        Ok(IpNet { addr, prefix })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut m: BTreeMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        m.entry("ARNO_CONFIG".into()).or_default();
        m
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = Config::load(&env(&[])).unwrap().config;
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.metrics_listen.to_string(), "127.0.0.1:9464");
        assert_eq!(c.public_url.as_str(), "http://127.0.0.1:8080/");
        assert_eq!(c.data_dir, PathBuf::from("./arno-data"));
        assert!(c.database_url.expose().starts_with("sqlite:///"));
        assert!(c.database_url.expose().ends_with("arno-data/arno.db"));
        assert_eq!(c.storage_url.scheme(), "file");
        assert!(c.storage_url.path().ends_with("arno-data/objects/"));
        assert_eq!(c.session_idle_timeout, Duration::from_secs(8 * 3600));
        assert_eq!(c.session_absolute_timeout, Duration::from_secs(7 * 86400));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(10));
        assert!(c.secret_key.is_none());
        let login = (c.login_max_failures_per_account, c.login_max_failures_per_ip, c.login_max_failures_account_wide);
        assert_eq!(login, (5, 30, 50));
    }

    #[test]
    fn the_account_wide_sign_in_backstop_follows_the_pair_limit_unless_set() {
        let load = |pairs: &[(&str, &str)]| Config::load(&env(pairs)).unwrap().config;
        let c = load(&[("ARNO_LOGIN_MAX_FAILURES_PER_ACCOUNT", "3")]);
        assert_eq!((c.login_max_failures_per_account, c.login_max_failures_account_wide), (3, 30));
        let c = load(&[("ARNO_LOGIN_MAX_FAILURES_PER_ACCOUNT", "3"), ("ARNO_LOGIN_MAX_FAILURES_ACCOUNT_WIDE", "200")]);
        assert_eq!(c.login_max_failures_account_wide, 200);
        let c = load(&[("ARNO_LOGIN_MAX_FAILURES_PER_ACCOUNT", "1000")]);
        assert_eq!(c.login_max_failures_account_wide, 10_000);
    }

    #[test]
    fn project_quota_and_local_git_roots() {
        let c = Config::load(&env(&[])).unwrap().config;
        assert_eq!((c.projects_quota, c.git_local_roots.len()), (1 << 30, 0));
        for (raw, bytes) in [("500MiB", 500 << 20), ("2GB", 2_000_000_000), ("1048576", 1 << 20), ("1 GiB", 1 << 30)] {
            let c = Config::load(&env(&[("ARNO_PROJECTS_QUOTA", raw)])).unwrap().config;
            assert_eq!(c.projects_quota, bytes, "{raw}");
        }
        for raw in ["lots", "10 parsecs", "1KiB", "99999999999TiB"] {
            let e = Config::load(&env(&[("ARNO_PROJECTS_QUOTA", raw)])).unwrap_err();
            assert_eq!(e.key, "ARNO_PROJECTS_QUOTA", "{raw}");
        }
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::create_dir(&a).unwrap();
        let roots = format!("{}:{}", a.display(), dir.path().display());
        let c = Config::load(&env(&[("ARNO_GIT_LOCAL_ROOTS", &roots)])).unwrap().config;
        assert_eq!(c.git_local_roots, [a.canonicalize().unwrap(), dir.path().canonicalize().unwrap()]);
        for bad in ["relative/dir", "/does/not/exist"] {
            let e = Config::load(&env(&[("ARNO_GIT_LOCAL_ROOTS", bad)])).unwrap_err();
            assert_eq!(e.key, "ARNO_GIT_LOCAL_ROOTS", "{bad}");
        }
    }

    #[test]
    fn env_beats_file_beats_default() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("arno.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:7000\"\nlog = \"debug\"\n[session]\nidle_timeout = \"1h\"\n")
            .unwrap();
        let f = file.to_str().unwrap();
        let loaded = Config::load(&env(&[("ARNO_CONFIG", f), ("ARNO_LISTEN", "127.0.0.1:7001")])).unwrap();
        assert_eq!(loaded.config.listen.to_string(), "127.0.0.1:7001");
        assert_eq!(loaded.config.log, "debug");
        assert_eq!(loaded.config.session_idle_timeout, Duration::from_secs(3600));
        assert_eq!(loaded.config.metrics_listen.to_string(), "127.0.0.1:9464");
        let src = |k: &str| loaded.resolved.iter().find(|r| r.key == k).unwrap().source;
        assert_eq!(src("listen"), Source::Env);
        assert_eq!(src("log"), Source::File);
        assert_eq!(src("metrics_listen"), Source::Default);
        // The default public URL follows the effective listen address.
        assert_eq!(loaded.config.public_url.as_str(), "http://127.0.0.1:7001/");
    }

    #[test]
    fn secrets_come_from_files_and_never_print() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("key");
        std::fs::write(&key_file, "k".repeat(40) + "\n").unwrap();
        let loaded = Config::load(&env(&[("ARNO_SECRET_KEY_FILE", key_file.to_str().unwrap())])).unwrap();
        assert_eq!(loaded.config.secret_key.as_ref().unwrap().expose(), "k".repeat(40));
        let debug = format!("{:?}", loaded.config);
        assert!(!debug.contains(&"k".repeat(40)), "Debug leaked the secret");
        let shown = loaded.resolved.iter().find(|r| r.key == "secret_key").unwrap();
        assert_eq!(shown.shown, "[redacted]");

        let file = dir.path().join("arno.toml");
        std::fs::write(&file, format!("secret_key_file = \"{}\"\n", key_file.display())).unwrap();
        let loaded = Config::load(&env(&[("ARNO_CONFIG", file.to_str().unwrap())])).unwrap();
        assert_eq!(loaded.config.secret_key.unwrap().expose(), "k".repeat(40));
    }

    #[test]
    fn database_password_is_redacted_in_check_output() {
        let loaded = Config::load(&env(&[("ARNO_DATABASE_URL", "postgres://arno:hunter2@db:5432/arno")])).unwrap();
        let shown = loaded.resolved.iter().find(|r| r.key == "database_url").unwrap();
        assert!(!shown.shown.contains("hunter2"));
        assert!(shown.shown.contains("db:5432"));
        assert!(!format!("{:?}", loaded.config).contains("hunter2"));
    }

    #[test]
    fn invalid_values_name_the_key() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("ARNO_LISTEN", "nowhere")], "ARNO_LISTEN"),
            (&[("ARNO_METRICS_LISTEN", "127.0.0.1")], "ARNO_METRICS_LISTEN"),
            (&[("ARNO_PUBLIC_URL", "ftp://x")], "ARNO_PUBLIC_URL"),
            (&[("ARNO_PUBLIC_URL", "https://corp.example/arno")], "ARNO_PUBLIC_URL"),
            (&[("ARNO_DATABASE_URL", "mysql://x")], "ARNO_DATABASE_URL"),
            (&[("ARNO_STORAGE_URL", "gcs://bucket")], "ARNO_STORAGE_URL"),
            (&[("ARNO_STORAGE_URL", "s3:///nobucket")], "ARNO_STORAGE_URL"),
            (&[("ARNO_SECRET_KEY", "short")], "ARNO_SECRET_KEY"),
            (&[("ARNO_SECRET_KEY_FILE", "/nonexistent/key")], "ARNO_SECRET_KEY_FILE"),
            (&[("ARNO_SECRET_KEY", "x".repeat(40).leak()), ("ARNO_SECRET_KEY_FILE", "/k")], "ARNO_SECRET_KEY"),
            (&[("ARNO_SESSION_IDLE_TIMEOUT", "forever")], "ARNO_SESSION_IDLE_TIMEOUT"),
            (&[("ARNO_SESSION_IDLE_TIMEOUT", "30d")], "ARNO_SESSION_IDLE_TIMEOUT"),
            (&[("ARNO_LOG", "info,[")], "ARNO_LOG"),
            (&[("ARNO_MAX_BODY_BYTES", "ten")], "ARNO_MAX_BODY_BYTES"),
            (&[("ARNO_LOGIN_MAX_FAILURES_ACCOUNT_WIDE", "4")], "ARNO_LOGIN_MAX_FAILURES_ACCOUNT_WIDE"),
            (&[("ARNO_LOGIN_MAX_FAILURES_ACCOUNT_WIDE", "0")], "ARNO_LOGIN_MAX_FAILURES_ACCOUNT_WIDE"),
            (&[("ARNO_TRUSTED_PROXIES", "10.0.0.0/99")], "ARNO_TRUSTED_PROXIES"),
            (&[("ARNO_AUDIT_RETENTION", "1h")], "ARNO_AUDIT_RETENTION"),
            (&[("ARNO_AUDIT_STREAM_URLS", "ftp://siem")], "ARNO_AUDIT_STREAM_URLS"),
            (&[("ARNO_AUDIT_STREAM_URLS", "https://siem/in")], "ARNO_AUDIT_STREAM_TOKEN"),
            (&[("ARNO_S3_ACCESS_KEY_ID", "a")], "ARNO_S3_SECRET_ACCESS_KEY"),
            (&[("ARNO_CONFIG", "/nonexistent/arno.toml")], "ARNO_CONFIG"),
        ];
        for (pairs, key) in cases {
            let e = Config::load(&env(pairs)).expect_err(&format!("{pairs:?} should fail"));
            assert_eq!(e.key, *key, "{pairs:?}: {e}");
        }
    }

    #[test]
    fn file_errors_name_the_toml_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("arno.toml");
        std::fs::write(&file, "listen = \"bad\"\n").unwrap();
        let e = Config::load(&env(&[("ARNO_CONFIG", file.to_str().unwrap())])).unwrap_err();
        assert_eq!(e.key, "listen");
        std::fs::write(&file, "listen = [").unwrap();
        let e = Config::load(&env(&[("ARNO_CONFIG", file.to_str().unwrap())])).unwrap_err();
        assert_eq!(e.key, "ARNO_CONFIG");
    }

    #[test]
    fn unknown_keys_are_warned_about() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("arno.toml");
        std::fs::write(&file, "lisen = \"x\"\n[s3]\nregoin = \"y\"\n").unwrap();
        let loaded = Config::load(&env(&[("ARNO_CONFIG", file.to_str().unwrap()), ("ARNO_LISTN", "x")])).unwrap();
        let w = loaded.warnings.join("\n");
        assert!(w.contains("ARNO_LISTN"), "{w}");
        assert!(w.contains("`lisen`"), "{w}");
        assert!(w.contains("`s3.regoin`"), "{w}");
    }

    #[test]
    fn ip_networks_match() {
        let net: IpNet = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.9.9".parse().unwrap()));
        let one: IpNet = "::1".parse().unwrap();
        assert!(one.contains("::1".parse().unwrap()));
        assert!("0.0.0.0/0".parse::<IpNet>().unwrap().contains("8.8.8.8".parse().unwrap()));
    }
}
