//! The `arno` command line. Thin: parse, load configuration, call into the library.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use arno::auth::{self, OrgRole};
use arno::config::Config;
use arno::db::Db;
use arno::error::AppError;

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
    /// Apply pending database migrations and exit.
    Migrate,
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
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and print the effective values (secrets redacted).
    Check,
}

#[derive(Subcommand)]
enum AdminCommand {
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
        match cli.command {
            Command::Serve => serve(loaded).await,
            Command::Migrate => migrate(loaded.config).await,
            Command::Admin { command } => admin(loaded.config, command).await,
            Command::Config { .. } | Command::Version => unreachable!("handled above"),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
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
            let user =
                auth::create_local_user(&db, auth::NewLocalUser { email: &email, name: &name, password, org_role })
                    .await
                    .map_err(describe)?;
            if admin {
                // Setup is over: the one-time token must stop working.
                auth::setup::issue_if_needed(&db, &config.data_dir).await.map_err(describe)?;
            }
            println!("created user {} (@{}, {})", user.id, user.handle, user.org_role.as_str());
        }
        AdminCommand::CreateToken { email, name, expires_days } => {
            let mut conn = db.pool().acquire().await?;
            let user = auth::users::find_by_email(&mut conn, &email)
                .await
                .map_err(describe)?
                .ok_or_else(|| anyhow::anyhow!("no active user has that e-mail address"))?;
            let (_, token) = auth::tokens::create(&mut conn, &user.id, &name, expires_days).await.map_err(describe)?;
            println!("{token}");
        }
    }
    db.close().await;
    Ok(())
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
