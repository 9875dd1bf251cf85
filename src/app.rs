//! Application state and the top-level routers, shared by `arno serve` and the tests.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::catch_panic::CatchPanicLayer;

use crate::auth;
use crate::config::Config;
use crate::db::Db;
use crate::error::{AppError, ErrorBody};
use crate::http::{self, api::ApiRouter};
use crate::keys::{self, Keys};
use crate::storage::Storage;
use crate::telemetry::{self, Metrics};
use crate::ui;

#[derive(Clone, Debug)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub storage: Storage,
    pub metrics: Metrics,
    pub keys: Arc<Keys>,
    pub openapi: Arc<serde_json::Value>,
    /// Open git repositories, by project.
    pub repos: Arc<crate::projects::Repos>,
    /// Configured OpenID providers.
    pub oidc: Arc<auth::oidc::Oidc>,
    /// Live project events for open pages.
    pub events: crate::projects::events::Bus,
    /// Loaded workflow documents and their connections.
    pub rooms: Arc<crate::workflow::Rooms>,
    /// This replica's job worker, for `/ready`.
    pub worker: Arc<crate::jobs::worker::Heartbeat>,
}

pub struct App {
    pub state: AppState,
    pub router: Router,
    pub metrics_router: Router,
    /// Issued at start while no admin exists.
    pub setup_token: Option<String>,
}

/// Every documented JSON API route.
pub fn api() -> ApiRouter {
    ApiRouter::new()
        .routes(utoipa_axum::routes!(http::api::openapi_json))
        .merge(auth::routes::api())
        .merge(auth::gdpr::api())
        .merge(auth::device::api())
        .merge(crate::git::connections_api::api())
        .merge(crate::projects::github_roles_api::api())
        .merge(crate::audit::routes::api())
        .merge(crate::projects::routes::api())
        .merge(crate::projects::specs_api::api())
        .merge(crate::projects::comments::api())
        .merge(crate::projects::changes::api())
        .merge(ApiRouter::new().routes(utoipa_axum::routes!(crate::workflow::ws::ticket)))
        .merge(crate::workflow::history::api())
        .merge(ApiRouter::new().routes(utoipa_axum::routes!(crate::workflow::page::components_api)))
        .merge(ApiRouter::new().routes(utoipa_axum::routes!(crate::projects::events::stream)))
}

/// Prepare everything `serve` needs: data directory, secret, database (migrated), storage.
pub async fn build(config: Config) -> anyhow::Result<App> {
    create_private_dir(&config.data_dir)
        .await
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let secret = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || keys::load_or_create(&config)).await??
    };
    let db = Db::connect(&config.database_url, config.database_max_connections).await?;
    db.migrate().await?;
    keys::check_fingerprint(&db, &secret).await?;
    let relativized = crate::projects::relativize_managed_paths(&db, &config.data_dir).await.map_err(to_anyhow)?;
    if relativized > 0 {
        tracing::info!(
            event_type = "repo_paths_relativized",
            projects = relativized,
            "managed repository paths are now stored relative to the data directory"
        );
    }
    let keys = Arc::new(Keys::derive(&secret));
    let configured = crate::git::connections_config::apply(&db, &keys, &config.git_connections).await?;
    if !configured.is_empty() {
        tracing::info!(event_type = "git_connections_configured", connections = ?configured,
            "git connections written from the configuration file");
    }
    let hosted = Arc::new(crate::git::hosted::HostedClients::new(db.clone(), keys.clone()));
    let repos = Arc::new(
        crate::projects::Repos::new(&config.data_dir).context("resolving the data directory")?.with_hosted(hosted),
    );
    let storage = Storage::from_config(&config).await?;
    let (api_router, mut openapi) = api().split();
    openapi.openapi = utoipa::openapi::OpenApiVersion::Version31;
    let oidc = Arc::new(auth::oidc::Oidc::new(&config.oidc).context("preparing the OpenID Connect client")?);
    let rooms = Arc::new(crate::workflow::Rooms::new(
        db.clone(),
        crate::workflow::Limits {
            max_message_bytes: usize::try_from(config.workflow_max_message_bytes).unwrap_or(usize::MAX),
            max_document_bytes: usize::try_from(config.workflow_max_document_bytes).unwrap_or(usize::MAX),
            awareness_per_second: config.workflow_awareness_per_second,
            idle_room: Duration::from_secs(60),
        },
        crate::projects::writeback::Schedule::of(&config),
    )?);
    let state = AppState {
        oidc,
        config: Arc::new(config),
        db,
        storage,
        metrics: Metrics::new(),
        keys,
        openapi: Arc::new(serde_json::to_value(&openapi).context("serialising the OpenAPI document")?),
        repos,
        events: crate::projects::events::Bus::default(),
        rooms,
        worker: Default::default(),
    };
    let setup_token = auth::setup::issue_if_needed(&state.db, &state.config.data_dir).await.map_err(to_anyhow)?;
    let router = router(state.clone(), api_router);
    let metrics_router = metrics_router(state.metrics.clone());
    Ok(App { state, router, metrics_router, setup_token })
}

/// The data directory holds the database, the secret key and the setup token: when Arno
/// creates it, only its owner may enter.
async fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if tokio::fs::metadata(dir).await.is_ok() {
        return Ok(());
    }
    tokio::fs::create_dir_all(dir).await?;
    tokio::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).await
}

fn to_anyhow(e: AppError) -> anyhow::Error {
    match e {
        AppError::Internal(e) => e,
        other => anyhow::anyhow!(other.to_string()),
    }
}

fn router(state: AppState, api: Router<AppState>) -> Router {
    Router::new()
        .route("/", get(ui::home))
        .route("/login", get(auth::routes::login_form).post(auth::routes::login))
        .route("/logout", post(auth::routes::logout))
        .route("/device", get(auth::device::page).post(auth::device::decide))
        .route("/profile", get(auth::profile::show))
        .route("/profile/tokens", post(auth::profile::create_token))
        .route("/profile/tokens/{id}/revoke", post(auth::profile::revoke_token))
        .route("/profile/git-logins/{connection}", post(auth::profile::start_link))
        .route("/profile/git-logins/{connection}/check", post(auth::profile::check_link))
        .route("/profile/git-logins/{connection}/unlink", post(auth::profile::unlink))
        .route("/admin", get(crate::admin::overview))
        .route("/admin/scim-token", post(crate::admin::scim_token))
        .route("/admin/users", get(crate::admin::list))
        .route("/admin/git", get(crate::admin::git::page))
        .route("/admin/git/connections", post(crate::admin::git::create))
        .route("/admin/git/connections/{name}", post(crate::admin::git::update))
        .route("/admin/git/connections/{name}/delete", post(crate::admin::git::delete))
        .route("/admin/users/{id}", get(crate::admin::show))
        .route("/admin/users/{id}/role", post(crate::admin::set_role))
        .route("/admin/users/{id}/deactivate", post(crate::admin::deactivate))
        .route("/admin/users/{id}/reactivate", post(crate::admin::reactivate))
        .route("/admin/users/{id}/sessions/revoke", post(crate::admin::revoke_sessions))
        .route("/admin/users/{id}/tokens/{token_id}/revoke", post(crate::admin::revoke_token))
        .route("/auth/oidc/{id}/login", get(auth::oidc::routes::login))
        .route("/auth/oidc/{id}/callback", get(auth::oidc::routes::callback))
        .route("/auth/oidc/{id}/backchannel-logout", post(auth::oidc::logout::backchannel))
        .route("/setup", get(auth::routes::setup_form).post(auth::routes::setup_submit))
        .route("/health", get(telemetry::health))
        .route("/ready", get(telemetry::ready))
        .route("/static/{file}", get(ui::static_file))
        .route("/downloads/arno", get(ui::download_binary))
        .route("/api/v1/webhooks/github/{connection}", post(crate::git::webhooks::receive_github))
        .route("/api/v1/workflow/{project_id}", get(crate::workflow::ws::connect))
        .route("/audit", get(crate::audit::console::audit_page))
        .route("/audit/verify", post(crate::audit::console::verify_page))
        .route("/projects", get(crate::projects::pages::list).post(crate::projects::pages::create))
        .route("/projects/{slug}", get(crate::projects::pages::show))
        .route("/projects/{slug}/scan", post(crate::projects::pages::scan))
        .route("/projects/{slug}/setup", post(crate::projects::pages::setup))
        .route("/projects/{slug}/onboarding", post(crate::projects::pages::onboarding))
        .route(
            "/projects/{slug}/members",
            get(crate::projects::pages::members).post(crate::projects::pages::set_member),
        )
        .route("/projects/{slug}/members/{user_id}/remove", post(crate::projects::pages::remove_member))
        .route("/projects/{slug}/members/github", post(crate::projects::pages::github_roles))
        .route("/projects/{slug}/components", post(crate::projects::pages::create_component))
        .route("/projects/{slug}/components/{component_id}", get(crate::projects::pages::component))
        .route(
            "/projects/{slug}/delete/{*path}",
            get(crate::projects::removal::confirm).post(crate::projects::removal::submit),
        )
        .route(
            "/projects/{slug}/edit/{*path}",
            get(crate::projects::editor::edit).post(crate::projects::editor::submit),
        )
        .route("/projects/{slug}/workflow", get(crate::workflow::page::page))
        .route("/projects/{slug}/workflow/screens/{screen_id}", get(crate::workflow::page::screen_page))
        .route("/projects/{slug}/changes", get(crate::projects::changes::changes_page))
        .route("/projects/{slug}/changes/{handle}", get(crate::projects::changes::change))
        .route("/projects/{slug}/changes/{handle}/{action}", post(crate::projects::changes::change_submit))
        .merge(auth::scim::routes())
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Innermost first: CSRF sees requests after the context exists; panics become 500s
        // that are still logged, counted and given security headers.
        .layer(from_fn_with_state(state.clone(), http::csrf::guard))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(CatchPanicLayer::custom(|_| AppError::Internal(anyhow::anyhow!("handler panicked")).into_response()))
        .layer(from_fn_with_state(state.clone(), http::security_headers))
        .layer(from_fn_with_state(state.clone(), http::observe))
        .with_state(state)
}

async fn not_found() -> AppError {
    AppError::NotFound
}

async fn method_not_allowed() -> Response {
    let ctx = http::context::current();
    let body = ErrorBody {
        code: "method_not_allowed",
        message: "this route does not accept that method".into(),
        details: None,
        retry_after_ms: None,
        trace_id: ctx.map(|c| c.trace_id),
    };
    (StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response()
}

/// The metrics listener serves `/metrics` and nothing else.
fn metrics_router(metrics: Metrics) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move {
                ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics.render())
            }
        }),
    )
}

/// Housekeeping that keeps tables small; runs until shutdown.
async fn maintenance(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(300));
    let mut first = true;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if std::mem::take(&mut first) {
            // Webhook deliveries made while this instance was down.
            if let Err(e) = crate::projects::sync::missed_deliveries(&state).await {
                tracing::warn!(event_type = "missed_deliveries_failed", error = %e, "could not look for missed webhook deliveries");
            }
        }
        let idle = state.config.session_idle_timeout;
        let result = async {
            let mut conn = state.db.pool().acquire().await?;
            let live = auth::sessions::sweep(&mut conn, idle).await?;
            state.metrics.sessions_active.set(live);
            auth::throttle::sweep(&state.db).await?;
            auth::oidc::sweep(&mut conn).await?;
            auth::device::sweep(&mut conn).await?;
            // Sign the audit chain's head regularly, so tampering with anything older than a
            // few minutes contradicts a signature made before it.
            crate::audit::checkpoint(&state.db, &state.keys.audit).await?;
            crate::jobs::sweep(&mut conn).await?;
            crate::git::webhooks::prune(&mut conn, crate::db::now_ms()).await?;
            crate::workflow::compact::prune_backups(&state, state.config.workflow_backup_retention).await?;
            let origin = crate::audit::Origin::system();
            crate::projects::archive_idle(&state.db, crate::db::now_ms()).await?;
            let after = state.config.git_onboarding_archive_after;
            crate::projects::onboarding::archive_stale(&state.db, crate::db::now_ms(), after).await?;
            let holds = crate::projects::audit_holds(&state.db, state.config.audit_retention).await?;
            crate::audit::retention::purge(&state.db, state.config.audit_retention, &holds, &origin).await.map(|_| ())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(event_type = "maintenance_failed", error = %e, "housekeeping failed");
        }
    }
}

/// Serve until `shutdown` resolves, then stop accepting, let in-flight requests finish for at
/// most `shutdown_timeout`, and close the database.
pub async fn serve(
    app: App,
    listener: TcpListener,
    metrics_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let wait = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let main = axum::serve(listener, app.router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(wait(stop_rx.clone()));
    let metrics = axum::serve(metrics_listener, app.metrics_router).with_graceful_shutdown(wait(stop_rx.clone()));
    let mut main = tokio::spawn(main.into_future());
    let mut metrics = tokio::spawn(metrics.into_future());
    let housekeeping = tokio::spawn(maintenance(app.state.clone(), stop_rx.clone()));
    app.state.worker.started();
    let worker = tokio::spawn(crate::jobs::worker::run(app.state.clone(), stop_rx.clone()));
    let damper = tokio::spawn(crate::audit::run_damper(app.state.db.clone(), stop_rx.clone()));
    let workflow_listener = tokio::spawn(
        app.state.rooms.clone().listen(app.state.config.database_url.expose().to_owned(), stop_rx.clone()),
    );
    let events = app.state.events.clone();
    let listener = tokio::spawn(events.clone().listen(
        app.state.db.clone(),
        app.state.config.database_url.expose().to_owned(),
        stop_rx.clone(),
    ));
    let config = &app.state.config;
    let streaming = match (&config.audit_stream_urls, &config.audit_stream_token) {
        (urls, Some(token)) if !urls.is_empty() => {
            crate::audit::stream::register(&app.state.db, urls).await.map_err(to_anyhow)?;
            let run = crate::audit::stream::run(app.state.db.clone(), urls.clone(), token.clone(), stop_rx.clone());
            Some(tokio::spawn(run))
        }
        _ => None,
    };

    tokio::select! {
        _ = shutdown => {}
        r = &mut main => anyhow::bail!("the HTTP server stopped: {:?}", r),
        r = &mut metrics => anyhow::bail!("the metrics server stopped: {:?}", r),
    }
    let timeout = app.state.config.shutdown_timeout;
    tracing::info!(
        event_type = "shutdown",
        timeout_ms = timeout.as_millis() as u64,
        "shutting down; finishing in-flight requests"
    );
    let _ = stop_tx.send(true);
    events.close();
    app.state.rooms.close();
    let drained = tokio::time::timeout(timeout, async {
        let _ = main.await;
        let _ = metrics.await;
        let _ = housekeeping.await;
        let _ = worker.await;
        let _ = damper.await;
        let _ = workflow_listener.await;
        let _ = listener.await;
        if let Some(s) = streaming {
            let _ = s.await;
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(event_type = "shutdown", "in-flight requests did not finish in time; exiting anyway");
    }
    app.state.db.close().await;
    tracing::info!(event_type = "shutdown", "stopped");
    Ok(())
}
