//! The `arno` command line. Thin: parse, load configuration, call into the library.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use arno::audit::{self, Actor};
use arno::auth::{self, OrgRole};
use arno::config::Config;
use arno::db::Db;
use arno::error::AppError;

mod cli_login;
mod spec_cli;

/// sysexits(3) EX_CONFIG: the configuration is invalid.
const EXIT_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(name = "arno", version, about = "Arno: a self-hosted product-design workspace on your own git repositories")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (UI, API and metrics listeners). Applies pending migrations first.
    Serve,
    /// Apply pending database migrations and exit (`serve` does this too, under a lock).
    Migrate {
        /// Only tell what would run: exit 0 when the database is up to date, 1 when migrations
        /// are pending (listed), 2 when the database is newer than this binary.
        #[arg(long)]
        check: bool,
    },
    /// Take a consistent online backup: the database, every stored object, every git repository
    /// Arno manages ({data}/repos) and the instance key, with a manifest and checksums, into the
    /// new directory DEST (it appears once complete). Repositories connected from outside the data
    /// directory are not copied (the output names them).
    /// Exit status 3: nothing to back up (this configuration's database was never initialized).
    Backup {
        /// A directory that does not exist yet.
        dest: PathBuf,
    },
    /// Restore a backup into an empty database, object store and data directory (checksums
    /// verified first, repositories checked; a backup from a newer Arno is refused). Migrates it
    /// forward to this version.
    Restore {
        /// The backup directory.
        src: PathBuf,
        /// Only verify the backup's checksums and print what it holds.
        #[arg(long)]
        verify_only: bool,
    },
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print the version.
    Version,
    /// Administrative tasks run on the appliance.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Check a checkout's component specs (or one spec file): prints `file:line: message` for
    /// every problem; exits 1 when there are errors, 2 when PATH cannot be read.
    Lint {
        /// The repository checkout (its `.arno/config.json` says where the specs are) or one `.md` file.
        path: PathBuf,
    },
    /// Give every component, prop and event without an id a new UUID, in place, touching nothing
    /// else in the files.
    BackfillIds {
        /// The repository checkout or one `.md` file.
        path: PathBuf,
        /// Report what would change without writing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Sign this command line in to an Arno server (OAuth 2.0 device flow): prints a code to
    /// approve in the browser, then stores an API token in $XDG_CONFIG_HOME/arno/credentials.json.
    Login {
        /// The server's URL, e.g. https://arno.example.com
        #[arg(long)]
        server: String,
    },
    /// Export and verify the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Export a time range to a file (JSON Lines or CSV), signed for offline verification.
    Export {
        /// Start (inclusive): RFC 3339 time or a date; default: the beginning.
        #[arg(long)]
        from: Option<String>,
        /// End (exclusive); default: now.
        #[arg(long)]
        to: Option<String>,
        /// `jsonl` (verifiable with `arno audit verify`), `csv`, `ocsf` or `cef`.
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// Where to write; the file appears only once the export is complete.
        #[arg(long)]
        out: PathBuf,
        /// Show in full only this actor's records (others stay as chain stubs).
        #[arg(long)]
        actor: Option<String>,
        #[arg(long)]
        action: Option<String>,
        #[arg(long)]
        project: Option<String>,
        #[arg(long)]
        target: Option<String>,
        /// `allowed` or `denied`.
        #[arg(long)]
        outcome: Option<String>,
    },
    /// Verify an export offline (JSON Lines, CSV, OCSF or CEF): exits 1 naming the first altered,
    /// missing, inserted or reordered record, or a truncated end.
    Verify {
        /// The export (`-` for standard input).
        file: PathBuf,
        /// The instance's public key (`arno audit public-key`); without it the key written in
        /// the file is used, which only proves the file is intact, not who wrote it.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Print the public key that signs audit checkpoints and exports.
    PublicKey,
    /// Sign the current head of the audit chain now.
    Checkpoint,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and print the effective values (secrets redacted).
    Check,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Generate the bearer token SCIM clients (Entra ID, Okta) use, replacing the previous one,
    /// and print it. Arno stores it encrypted with the instance key.
    ScimToken,
    /// Create a user who signs in with a password.
    CreateUser {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// File holding the password (`-` reads standard input); never pass it on the command line.
        #[arg(long)]
        password_file: PathBuf,
        /// Make the user an organisation admin.
        #[arg(long)]
        admin: bool,
    },
    /// Create a personal API token for an existing user and print it.
    CreateToken {
        #[arg(long)]
        email: String,
        /// What the token is for.
        #[arg(long)]
        name: String,
        /// Lifetime in days (1–365, default 90).
        #[arg(long)]
        expires_days: Option<i64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Version = cli.command {
        println!("arno {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    // Spec tools and verification are offline: no configuration, no database.
    match &cli.command {
        Command::Lint { path } => return spec_cli::lint(path),
        Command::BackfillIds { path, dry_run } => return spec_cli::backfill_ids(path, *dry_run),
        Command::Login { server } => return cli_login::login(server),
        _ => {}
    }
    if let Command::Audit { command: AuditCommand::Verify { file, public_key } } = &cli.command {
        return audit_verify(file, public_key.as_deref());
    }
    let loaded = match Config::from_process_env() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Command::Config { command: ConfigCommand::Check } = cli.command {
        return config_check(&loaded);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let done = |r: anyhow::Result<()>| r.map(|()| ExitCode::SUCCESS);
        match cli.command {
            Command::Serve => done(serve(loaded).await),
            Command::Migrate { check: false } => done(migrate(loaded.config).await),
            Command::Migrate { check: true } => migrate_check(loaded.config).await,
            Command::Backup { dest } => done(backup(loaded.config, dest).await),
            Command::Restore { src, verify_only } => done(restore(loaded.config, src, verify_only).await),
            Command::Admin { command } => done(admin(loaded.config, command).await),
            Command::Audit { command } => done(audit(loaded.config, command).await),
            Command::Config { .. }
            | Command::Version
            | Command::Lint { .. }
            | Command::BackfillIds { .. }
            | Command::Login { .. } => {
                unreachable!("handled above")
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) if e.is::<arno::backup::NothingToBackUp>() => {
            eprintln!("{e}");
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn config_check(loaded: &arno::config::Loaded) -> ExitCode {
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    match &loaded.config_file {
        Some(f) => println!("# configuration file: {}", f.display()),
        None => println!("# configuration file: none"),
    }
    let width = loaded.resolved.iter().map(|r| r.env.len()).max().unwrap_or(0);
    for r in &loaded.resolved {
        println!("{:width$} = {}  # {} ({})", r.env, r.shown, r.key, r.source);
    }
    for p in &loaded.config.oidc {
        // Never the client secret.
        println!(
            "# [[oidc]] {} \"{}\": issuer {}, client {}, groups claim {}, {} org and {} project group mapping(s){}",
            p.id,
            p.name,
            p.issuer,
            p.client_id,
            p.groups_claim,
            p.org_roles.len(),
            p.project_roles.len(),
            if p.strict { ", strict" } else { "" }
        );
    }
    for c in &loaded.config.git_connections {
        // Never the private key or the webhook secret: only where they come from.
        println!(
            "# [[git.connections]] {} ({}): {}, App {}{}, private key and webhook secret set (not shown){}",
            c.name,
            c.provider,
            c.api_url,
            c.app_id,
            c.client_id.as_deref().map(|id| format!(", client {id}")).unwrap_or_default(),
            if c.ca_bundle.is_some() { ", own CA bundle" } else { "" }
        );
    }
    println!("# configuration is valid");
    ExitCode::SUCCESS
}

async fn serve(loaded: arno::config::Loaded) -> anyhow::Result<()> {
    let shutdown = shutdown_signal()?;
    let config = loaded.config;
    arno::telemetry::logging::init(&config.log);
    for w in &loaded.warnings {
        tracing::warn!(event_type = "config_warning", "{w}");
    }
    let app = arno::app::build(config.clone()).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (ARNO_LISTEN): {e}", config.listen))?;
    let metrics_listener = tokio::net::TcpListener::bind(config.metrics_listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (ARNO_METRICS_LISTEN): {e}", config.metrics_listen))?;
    let base = config.public_base();
    tracing::info!(
        event_type = "started",
        version = env!("CARGO_PKG_VERSION"),
        database = app.state.db.backend().name(),
        storage = %app.state.storage.describe(),
        listen = %config.listen,
        metrics_listen = %config.metrics_listen,
        "Arno is running: open {base}/"
    );
    if let Some(token) = &app.setup_token {
        let file = auth::setup::token_file(&config.data_dir);
        tracing::warn!(
            event_type = "setup_required",
            "No administrator exists yet. Open {base}/setup?token={token} to create one \
             (the token is also in {}).",
            file.display()
        );
    }
    arno::app::serve(app, listener, metrics_listener, shutdown).await
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called, not when the
/// future is first polled, so a signal that arrives while Arno is still starting is not lost
/// (nor does it kill the process with the default action).
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

async fn open_db(config: &Config) -> anyhow::Result<Db> {
    let db = Db::connect(&config.database_url, config.database_max_connections).await?;
    db.migrate().await?;
    Ok(db)
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let db = Db::connect(&config.database_url, config.database_max_connections).await?;
    let applied = db.migrate().await?;
    if applied.is_empty() {
        println!("database ({}) is up to date", db.backend().name());
    } else {
        for v in applied {
            println!("applied migration {v}");
        }
    }
    db.close().await;
    Ok(())
}

async fn migrate_check(config: Config) -> anyhow::Result<ExitCode> {
    let db = Db::connect(&config.database_url, 1).await?;
    let pending = match db.pending().await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e:#}");
            db.close().await;
            return Ok(ExitCode::from(2));
        }
    };
    let applied = db.applied_versions().await?;
    db.close().await;
    if pending.is_empty() {
        println!("database ({}) is up to date: schema {}", db.backend().name(), applied.last().copied().unwrap_or(0));
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "database ({}) at schema {}; {} migration(s) would run:",
        db.backend().name(),
        applied.last().copied().unwrap_or(0),
        pending.len()
    );
    for (version, description) in pending {
        println!("  {version} {description}");
    }
    Ok(ExitCode::from(1))
}

async fn backup(config: Config, dest: PathBuf) -> anyhow::Result<()> {
    let report = arno::backup::backup(&config, &dest).await?;
    let m = &report.manifest;
    let rows: u64 = m.tables.values().map(|t| t.rows).sum();
    let bytes: u64 = m.files.values().map(|f| f.size).sum();
    for key in &report.vanished {
        eprintln!("warning: object {key} was deleted while the backup ran and is not in it");
    }
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    // Recorded in the live database (after the snapshot, so not in this backup itself).
    match Db::connect(&config.database_url, 1).await {
        Err(e) => eprintln!("warning: the backup is complete, but its audit record failed: cannot connect: {e}"),
        Ok(db) => {
            let origin = cli_origin("backup");
            let event = audit::Event::new("instance.backup", audit::Outcome::Allowed, Actor::System, &origin)
                .intent(serde_json::json!({"schema_version": m.schema_version, "rows": rows, "objects": m.objects,
                "repositories": m.repositories.len(), "bytes": bytes}));
            if let Err(e) = audit::record_alone(&db, event).await {
                eprintln!("warning: the backup is complete, but its audit record failed: {e}");
            }
            db.close().await;
        }
    }
    println!(
        "backup of {} database (schema {}, {} tables, {rows} rows), {} objects and {}, {bytes} bytes: {}",
        m.backend,
        m.schema_version,
        m.tables.len(),
        m.objects,
        repositories(m.repositories.len()),
        report.path.display()
    );
    print_external(m, "back it up yourself");
    Ok(())
}

fn repositories(n: usize) -> String {
    if n == 1 { "1 repository".to_owned() } else { format!("{n} repositories") }
}

/// Projects whose repository is not Arno's to copy.
fn print_external(m: &arno::backup::Manifest, advice: &str) {
    for e in m.external_repositories.values() {
        println!(
            "not in the backup: project {} uses the repository {}, outside the data directory; {advice}",
            e.project, e.path
        );
    }
}

async fn restore(config: Config, src: PathBuf, verify_only: bool) -> anyhow::Result<()> {
    if verify_only {
        let m = arno::backup::verify(&src).await?;
        let rows: u64 = m.tables.values().map(|t| t.rows).sum();
        println!(
            "intact: backup made {} by Arno {} of a {} database (schema {}, {} tables, {rows} rows), {} objects, \
             {}, instance key {}",
            m.created_at,
            m.arno_version,
            m.backend,
            m.schema_version,
            m.tables.len(),
            m.objects,
            repositories(m.repositories.len()),
            m.secret_key
        );
        print_external(&m, "a restore needs it at that path");
        return Ok(());
    }
    let report = arno::backup::restore(&config, &src).await?;
    let m = &report.manifest;
    let db = Db::connect(&config.database_url, 1).await?;
    let origin = cli_origin("restore");
    let event = audit::Event::new("instance.restore", audit::Outcome::Allowed, Actor::System, &origin)
        .intent(serde_json::json!({"backup_created_at": m.created_at, "backup_arno_version": m.arno_version,
            "schema_version": m.schema_version, "migrated": report.migrated}));
    audit::record_alone(&db, event).await.map_err(describe)?;
    db.close().await;
    let rows: u64 = m.tables.values().map(|t| t.rows).sum();
    println!(
        "restored the backup of {} ({} tables, {rows} rows, {} objects, {}; every checksum and row count verified, \
         every repository checked)",
        m.created_at,
        m.tables.len(),
        m.objects,
        repositories(m.repositories.len())
    );
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    print_external(m, "it must exist at that path on this machine");
    if !report.migrated.is_empty() {
        println!("migrated it forward: {:?}", report.migrated);
    }
    Ok(())
}

fn describe(e: AppError) -> anyhow::Error {
    match e {
        AppError::Internal(e) => e,
        other => anyhow::anyhow!("{other}"),
    }
}

async fn admin(config: Config, command: AdminCommand) -> anyhow::Result<()> {
    let db = open_db(&config).await?;
    match command {
        AdminCommand::CreateUser { email, name, password_file, admin } => {
            let password = read_password(&password_file)?;
            let org_role = if admin { OrgRole::Admin } else { OrgRole::Member };
            let new = auth::NewLocalUser { email: &email, name: &name, password, org_role };
            let origin = cli_origin("admin create-user");
            let user = auth::create_local_user(&db, new, Actor::System, &origin).await.map_err(describe)?;
            if admin {
                // Setup is over: the one-time token must stop working.
                auth::setup::issue_if_needed(&db, &config.data_dir).await.map_err(describe)?;
            }
            println!("created user {} (@{}, {})", user.id, user.handle, user.org_role.as_str());
        }
        AdminCommand::ScimToken => {
            let secret = arno::keys::load_or_create(&config)?;
            let operator = arno::keys::check_fingerprint(&db, &secret).await?;
            let keys = arno::keys::Keys::derive(&secret);
            let origin = cli_origin("admin scim-token");
            let by = auth::scim::TokenRotation::HostOperator(&operator);
            let token = auth::scim::rotate_token(&db, &keys, by, &origin).await.map_err(describe)?;
            println!("{token}");
        }
        AdminCommand::CreateToken { email, name, expires_days } => {
            let mut tx = db.begin().await?;
            let user = auth::users::find_by_email(&mut tx, &email)
                .await
                .map_err(describe)?
                .ok_or_else(|| anyhow::anyhow!("no active user has that e-mail address"))?;
            let (info, token) = auth::tokens::create(&mut tx, &user.id, &name, expires_days).await.map_err(describe)?;
            let origin = cli_origin("admin create-token");
            let event = audit::Event::new("token.create", audit::Outcome::Allowed, Actor::System, &origin)
                .target("api_token", &info.id)
                .intent(serde_json::json!({"expires_at": info.expires_at, "for_user": user.id, "via": "cli"}));
            audit::record(&mut tx, event).await.map_err(describe)?;
            tx.commit().await?;
            println!("{token}");
        }
    }
    db.close().await;
    Ok(())
}

/// Shell commands are audited as the system acting for whoever runs them on the appliance.
fn cli_origin(command: &str) -> audit::Origin {
    let user = std::env::var("SUDO_USER").or_else(|_| std::env::var("USER")).unwrap_or_default();
    let agent = format!("arno-cli/{} ({command}; {user})", env!("CARGO_PKG_VERSION"));
    audit::Origin { ip: None, user_agent: Some(agent), request_id: None, trace_id: None }
}

async fn audit(config: Config, command: AuditCommand) -> anyhow::Result<()> {
    let secret = arno::keys::load_or_create(&config)?;
    let keys = arno::keys::Keys::derive(&secret);
    let db = open_db(&config).await?;
    arno::keys::check_fingerprint(&db, &secret).await?;
    match command {
        AuditCommand::PublicKey => println!("{}", keys.audit.public_key_text()),
        AuditCommand::Checkpoint => match audit::checkpoint(&db, &keys.audit).await.map_err(describe)? {
            Some(seq) => println!("signed checkpoint at seq {seq}"),
            None => println!("the chain head is already signed"),
        },
        AuditCommand::Export { from, to, format, out, actor, action, project, target, outcome } => {
            let query =
                audit::routes::ExportQuery { from, to, format: Some(format), actor, action, project, target, outcome };
            let req = query.into_request().map_err(describe)?;
            let origin = cli_origin("audit export");
            let event = audit::Event::new("audit.export", audit::Outcome::Allowed, Actor::System, &origin).intent(serde_json::json!({"from": arno::db::rfc3339(req.from), "to": req.to.map(arno::db::rfc3339), "format": req.format, "filter": req.filter, "via": "cli"}));
            audit::record_alone(&db, event).await.map_err(describe)?;
            audit::checkpoint(&db, &keys.audit).await.map_err(describe)?;
            // Write beside the target and rename when complete: no half file under the real name.
            let partial = out.with_extension("partial");
            let file = tokio::fs::File::create(&partial)
                .await
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", partial.display()))?;
            let mut sink = tokio::io::BufWriter::new(file);
            let summary = audit::export::run(&db, &keys.audit, &req, &mut sink).await.map_err(describe)?;
            tokio::io::AsyncWriteExt::flush(&mut sink).await?;
            sink.get_ref().sync_all().await?;
            tokio::fs::rename(&partial, &out).await?;
            eprintln!(
                "exported {} records ({} more as chain stubs, {} checkpoints) to {}",
                summary.records,
                summary.stubs,
                summary.checkpoints,
                out.display()
            );
        }
        AuditCommand::Verify { .. } => unreachable!("handled before configuration is loaded"),
    }
    db.close().await;
    Ok(())
}

fn audit_verify(file: &std::path::Path, public_key: Option<&str>) -> ExitCode {
    let key = match public_key.map(audit::parse_public_key) {
        Some(None) => {
            eprintln!("error: --public-key must look like ed25519:<base64url> (see `arno audit public-key`)");
            return ExitCode::from(2);
        }
        Some(Some(k)) => Some(k),
        None => None,
    };
    let reader: Box<dyn std::io::BufRead> = if file == std::path::Path::new("-") {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        match std::fs::File::open(file) {
            Ok(f) => Box::new(std::io::BufReader::new(f)),
            Err(e) => {
                eprintln!("error: cannot open {}: {e}", file.display());
                return ExitCode::FAILURE;
            }
        }
    };
    match audit::verify::verify_any(reader, key.as_ref()) {
        Ok(r) => {
            let seq = |s: Option<i64>| s.map(|s| s.to_string()).unwrap_or_else(|| "-".into());
            println!(
                "OK: {} records and {} chain stubs (seq {}..{}), {} signed checkpoints, signed by key {}",
                r.records,
                r.stubs,
                seq(r.first_seq),
                seq(r.last_seq),
                r.checkpoints,
                r.key_id
            );
            if !r.pinned {
                eprintln!(
                    "warning: checked against the key written in the file; pass --public-key to pin the instance's key"
                );
            }
            ExitCode::SUCCESS
        }
        Err(p) => {
            eprintln!("FAILED ({:?}): {p}", p.kind);
            ExitCode::FAILURE
        }
    }
}

fn read_password(path: &std::path::Path) -> anyhow::Result<String> {
    let mut text = String::new();
    if path == std::path::Path::new("-") {
        std::io::stdin().read_to_string(&mut text)?;
    } else {
        text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    }
    let password = text.trim_end_matches(['\n', '\r']).to_owned();
    anyhow::ensure!(!password.is_empty(), "the password file is empty");
    Ok(password)
}
