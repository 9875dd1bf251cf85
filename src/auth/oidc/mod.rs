//! Single sign-on with OpenID Connect: the authorization-code flow with PKCE (S256), `state` and
//! `nonce` bound to a pre-auth cookie, ID-token validation, users keyed by issuer + `sub`, and
//! IdP groups mapped to organisation and project roles on every sign-in.
//!
//! Specs: OpenID Connect Core 1.0 (§3.1 code flow, §3.1.3.7 ID token validation), RFC 7636
//! (PKCE), OpenID Connect RP-Initiated Logout 1.0, Back-Channel Logout 1.0.

pub mod config;
pub mod logout;
pub mod routes;

use std::sync::Arc;
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient, CoreClientAuthMethod,
    CoreGenderClaim, CoreGrantType, CoreJsonWebKey, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AccessToken, AdditionalClaims, AdditionalProviderMetadata, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    IdTokenVerifier, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, ProviderMetadata,
    RedirectUrl, Scope, SubjectIdentifier, TokenResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::AnyConnection;

pub use config::OidcProviderConfig;

use crate::db::{Db, now_ms};
use crate::error::AppError;

/// How long a started sign-in may take at the IdP.
pub const LOGIN_TTL: Duration = Duration::from_secs(10 * 60);
/// Discovery documents are re-read this often (keys also on an unknown `kid`).
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// At most one JWKS re-fetch per provider in this interval (an unknown `kid` cannot be used to
/// make Arno hammer the IdP).
const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// ID tokens issued longer ago than this are refused (they were minted for a login moments ago).
const MAX_ID_TOKEN_AGE: Duration = Duration::from_secs(10 * 60);
const CLOCK_SKEW: Duration = Duration::from_secs(120);

/// Discovery metadata plus the RP-initiated logout endpoint.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct LogoutMetadata {
    pub end_session_endpoint: Option<String>,
    #[serde(default)]
    pub backchannel_logout_supported: Option<bool>,
}
impl AdditionalProviderMetadata for LogoutMetadata {}

pub type Metadata = ProviderMetadata<
    LogoutMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// Claims Arno reads beyond the standard ones (groups, at any dotted path), kept as JSON.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ExtraClaims(serde_json::Map<String, Value>);
impl AdditionalClaims for ExtraClaims {}

/// Why a sign-in through an IdP did not work: what the user is told, and what is audited.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The IdP cannot be reached or answered nonsense: not the user's fault.
    #[error("the identity provider is unavailable: {0}")]
    Unavailable(String),
    /// The response did not pass validation (possible attack or misconfiguration).
    #[error("the identity provider's answer was rejected: {0}")]
    Rejected(String),
    /// The IdP said no (user cancelled, no access).
    #[error("the identity provider refused the sign-in: {0}")]
    Refused(String),
    /// The sign-in started elsewhere, expired, or was already used.
    #[error("this sign-in link has expired or was already used; start again")]
    Stale,
    /// Signed in at the IdP, but Arno's rules refuse them (strict mapping, deactivated).
    #[error("{0}")]
    Denied(String),
    #[error(transparent)]
    Internal(#[from] AppError),
}

impl From<sqlx::Error> for OidcError {
    fn from(e: sqlx::Error) -> Self {
        OidcError::Internal(e.into())
    }
}

#[derive(Clone)]
struct Discovered {
    metadata: Metadata,
    /// The same document as `CoreClient` wants it (without the logout extension).
    core: openidconnect::core::CoreProviderMetadata,
    jwks: CoreJsonWebKeySet,
    fetched_at: Instant,
    /// The last re-fetch caused by an unknown key (`None`: none yet).
    jwks_refetched_at: Option<Instant>,
}

/// One configured IdP and what Arno learnt from its discovery document.
pub struct Provider {
    pub config: OidcProviderConfig,
    discovered: tokio::sync::Mutex<Option<Discovered>>,
    /// The last failed discovery, remembered briefly so readiness probes do not hammer an IdP
    /// that is down.
    failed: std::sync::Mutex<Option<(Instant, String)>>,
}

/// Every configured IdP, and the HTTP client used to reach them.
pub struct Oidc {
    pub providers: Vec<Arc<Provider>>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("providers", &self.providers.iter().map(|p| &p.config.id).collect::<Vec<_>>())
            .finish()
    }
}

/// What the callback learnt about the person signing in.
#[derive(Clone, Debug)]
pub struct Identity {
    pub provider_id: String,
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub preferred_username: Option<String>,
    pub groups: Vec<String>,
    /// The ID token, kept for RP-initiated logout (`id_token_hint`).
    pub id_token: String,
}

impl Oidc {
    pub fn new(configs: &[OidcProviderConfig]) -> anyhow::Result<Oidc> {
        // Never follow redirects from an IdP endpoint (an SSRF vector); time out rather than hang.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Oidc {
            providers: configs
                .iter()
                .map(|c| {
                    Arc::new(Provider {
                        config: c.clone(),
                        discovered: tokio::sync::Mutex::new(None),
                        failed: Default::default(),
                    })
                })
                .collect(),
            http,
        })
    }

    pub fn provider(&self, id: &str) -> Option<&Arc<Provider>> {
        self.providers.iter().find(|p| p.config.id == id)
    }

    /// Whether the provider's discovery document can be read (from the cache while it is
    /// fresh), for `/ready`. A failure is remembered for 30 s.
    pub async fn reachable(&self, provider: &Provider) -> Result<(), String> {
        const REMEMBER: Duration = Duration::from_secs(30);
        if let Some((at, why)) = provider.failed.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
            && at.elapsed() < REMEMBER
        {
            return Err(why.clone());
        }
        match self.discovered(provider).await {
            Ok(_) => {
                *provider.failed.lock().unwrap_or_else(|p| p.into_inner()) = None;
                Ok(())
            }
            Err(e) => {
                let why = match e {
                    OidcError::Rejected(_) => "its discovery document names another issuer".to_owned(),
                    _ => "its discovery document cannot be fetched".to_owned(),
                };
                *provider.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), why.clone()));
                Err(why)
            }
        }
    }

    async fn discovered(&self, provider: &Provider) -> Result<Discovered, OidcError> {
        let mut slot = provider.discovered.lock().await;
        if let Some(d) = slot.as_ref().filter(|d| d.fetched_at.elapsed() < METADATA_TTL) {
            return Ok(d.clone());
        }
        // discover_async checks that the document's issuer is exactly the configured one.
        let metadata = Metadata::discover_async(issuer_exact(&provider.config), &self.http).await.map_err(|e| {
            let message = error_chain(&e);
            if message.contains("issuer") && message.contains("match") {
                OidcError::Rejected(format!("discovery: {message}"))
            } else {
                OidcError::Unavailable(format!("discovery: {message}"))
            }
        })?;
        let jwks = metadata.jwks().clone();
        let core = serde_json::to_value(&metadata)
            .and_then(serde_json::from_value::<openidconnect::core::CoreProviderMetadata>)
            .map_err(|e| OidcError::Unavailable(format!("discovery: {e}")))?
            .set_jwks(jwks.clone());
        let d = Discovered { metadata, core, jwks, fetched_at: Instant::now(), jwks_refetched_at: None };
        *slot = Some(d.clone());
        Ok(d)
    }

    /// Re-read the provider's keys, at most once per [`JWKS_REFETCH_INTERVAL`]. `None` when
    /// rate-limited.
    async fn refetch_jwks(&self, provider: &Provider) -> Result<Option<CoreJsonWebKeySet>, OidcError> {
        let mut slot = provider.discovered.lock().await;
        let Some(d) = slot.as_mut() else { return Ok(None) };
        if d.jwks_refetched_at.is_some_and(|at| at.elapsed() < JWKS_REFETCH_INTERVAL) {
            return Ok(None);
        }
        d.jwks_refetched_at = Some(Instant::now());
        let jwks = CoreJsonWebKeySet::fetch_async(d.metadata.jwks_uri(), &self.http)
            .await
            .map_err(|e| OidcError::Unavailable(format!("keys: {}", error_chain(&e))))?;
        d.jwks = jwks.clone();
        Ok(Some(jwks))
    }

    fn client(&self, provider: &Provider, d: &Discovered, public_base: &str) -> Result<ClientWithUrls, OidcError> {
        let redirect = RedirectUrl::new(format!("{public_base}/auth/oidc/{}/callback", provider.config.id))
            .map_err(|e| OidcError::Internal(AppError::Internal(e.into())))?;
        Ok(CoreClient::from_provider_metadata(
            d.core.clone(),
            ClientId::new(provider.config.client_id.clone()),
            Some(ClientSecret::new(provider.config.client_secret.expose().to_owned())),
        )
        .set_redirect_uri(redirect))
    }

    /// Start a sign-in: the IdP's authorization URL, and the row that the callback must find.
    pub async fn start(
        &self,
        db: &Db,
        provider: &Provider,
        public_base: &str,
        binding: &str,
        next: &str,
    ) -> Result<String, OidcError> {
        let d = self.discovered(provider).await?;
        let client = self.client(provider, &d, public_base)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request =
            client.authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random);
        for scope in provider.config.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        let mut conn = db.pool().acquire().await?;
        sqlx::query(
            "INSERT INTO oidc_logins (state_hash, binding_hash, provider_id, pkce_verifier, nonce, next_path, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(crate::keys::sha256_hex(state.secret()))
        .bind(crate::keys::sha256_hex(binding))
        .bind(&provider.config.id)
        .bind(verifier.secret())
        .bind(nonce.secret())
        .bind(next)
        .bind(now_ms() + crate::db::ms(LOGIN_TTL))
        .execute(&mut *conn)
        .await?;
        Ok(url.to_string())
    }

    /// Finish a sign-in at the callback: check the state against the browser's binding and the
    /// provider it started with, redeem the code, validate the ID token, read the groups.
    pub async fn finish(
        &self,
        db: &Db,
        provider: &Provider,
        public_base: &str,
        binding: Option<&str>,
        state: &str,
        code: &str,
    ) -> Result<(Identity, String), OidcError> {
        let (verifier, nonce, next) = take_login(db, &provider.config.id, binding, state).await?;
        let d = self.discovered(provider).await?;
        let client = self.client(provider, &d, public_base)?;
        let request = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Rejected(format!("no token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier));
        let response = request.request_async(&self.http).await.map_err(|e| match &e {
            openidconnect::RequestTokenError::ServerResponse(r) => {
                OidcError::Refused(format!("token endpoint: {}", r.error()))
            }
            // An ID token whose claims do not even parse (e.g. no `sub`) fails here.
            openidconnect::RequestTokenError::Parse(inner, _) => {
                OidcError::Rejected(format!("token response: {inner}"))
            }
            other => OidcError::Unavailable(format!("token endpoint: {}", error_chain(other))),
        })?;
        let id_token = response.id_token().ok_or_else(|| OidcError::Rejected("no ID token in the response".into()))?;
        let nonce = Nonce::new(nonce);
        let mut jwks = d.jwks.clone();
        let claims = loop {
            let verifier = self.verifier(provider, &d, jwks.clone());
            match id_token.claims(&verifier, &nonce) {
                Ok(claims) => break claims.clone(),
                Err(openidconnect::ClaimsVerificationError::SignatureVerification(
                    openidconnect::SignatureVerificationError::NoMatchingKey,
                )) => match self.refetch_jwks(provider).await? {
                    // Key rotation: one fresh look at the keys, then give up.
                    Some(fresh) if fresh != jwks => jwks = fresh,
                    _ => return Err(OidcError::Rejected("ID token signed with an unknown key".into())),
                },
                Err(e) => return Err(OidcError::Rejected(format!("ID token: {e}"))),
            }
        };
        // Arno also requires the token to be fresh: it was minted for this sign-in.
        let iat = claims.issue_time();
        let now = chrono_now();
        if iat > now + chrono::Duration::from_std(CLOCK_SKEW).unwrap_or_default()
            || now - iat > chrono::Duration::from_std(MAX_ID_TOKEN_AGE + CLOCK_SKEW).unwrap_or_default()
        {
            return Err(OidcError::Rejected("ID token issue time is not recent".into()));
        }
        let raw = id_token.to_string();
        let mut extra = jwt_payload(&raw).unwrap_or_default();
        let subject = claims.subject().to_string();
        let mut email_verified = claims.email_verified();
        // Groups may come only from the userinfo endpoint; its `sub` must be the ID token's.
        if lookup(&extra, &provider.config.groups_claim).is_none()
            && let Ok(request) = client.user_info(
                AccessToken::new(response.access_token().secret().clone()),
                Some(SubjectIdentifier::new(subject.clone())),
            )
        {
            let info: openidconnect::UserInfoClaims<ExtraClaims, CoreGenderClaim> =
                request.request_async(&self.http).await.map_err(|e| match e {
                    openidconnect::UserInfoError::ClaimsVerification(c) => {
                        OidcError::Rejected(format!("userinfo: {c}"))
                    }
                    other => OidcError::Unavailable(format!("userinfo: {}", error_chain(&other))),
                })?;
            for (k, v) in &info.additional_claims().0 {
                extra.entry(k.clone()).or_insert_with(|| v.clone());
            }
            // An ID token without the claim: userinfo may say, about the same address.
            if email_verified.is_none() && info.email().map(|e| e.as_str()) == claims.email().map(|e| e.as_str()) {
                email_verified = info.email_verified();
            }
        }
        let groups = match lookup(&extra, &provider.config.groups_claim) {
            Some(Value::Array(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
            Some(Value::String(s)) => vec![s.clone()],
            _ => vec![],
        };
        let identity = Identity {
            provider_id: provider.config.id.clone(),
            issuer: claims.issuer().to_string(),
            subject,
            email: claims.email().map(|e| e.to_string()),
            // No claim is not a yes (OpenID Connect Core §5.1: `email_verified`).
            email_verified: email_verified.unwrap_or(false),
            name: claims.name().and_then(|n| n.get(None)).map(|n| n.to_string()),
            preferred_username: claims.preferred_username().map(|u| u.to_string()),
            groups,
            id_token: raw,
        };
        Ok((identity, next))
    }

    fn verifier<'a>(
        &self,
        provider: &Provider,
        d: &Discovered,
        jwks: CoreJsonWebKeySet,
    ) -> IdTokenVerifier<'a, CoreJsonWebKey> {
        let verifier = IdTokenVerifier::new_confidential_client(
            ClientId::new(provider.config.client_id.clone()),
            ClientSecret::new(provider.config.client_secret.expose().to_owned()),
            d.metadata.issuer().clone(),
            jwks,
        );
        // Only the algorithms the IdP advertises; `none` is never among the accepted ones.
        verifier.set_allowed_algs(
            d.metadata
                .id_token_signing_alg_values_supported()
                .iter()
                .filter(|a| !matches!(a, openidconnect::core::CoreJwsSigningAlgorithm::None))
                .cloned()
                .collect::<Vec<_>>(),
        )
    }

    /// The IdP's end-session URL for RP-initiated logout, if it has one.
    pub async fn end_session_url(
        &self,
        provider: &Provider,
        id_token_hint: Option<&str>,
        post_logout: &str,
    ) -> Option<String> {
        let d = self.discovered(provider).await.ok()?;
        let endpoint = d.metadata.additional_metadata().end_session_endpoint.clone()?;
        let mut url = url::Url::parse(&endpoint).ok()?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(hint) = id_token_hint {
                q.append_pair("id_token_hint", hint);
            }
            q.append_pair("client_id", &provider.config.client_id);
            q.append_pair("post_logout_redirect_uri", post_logout);
        }
        Some(url.to_string())
    }

    pub(crate) async fn keys_for(&self, provider: &Provider) -> Result<(Metadata, CoreJsonWebKeySet), OidcError> {
        let d = self.discovered(provider).await?;
        Ok((d.metadata, d.jwks))
    }

    pub(crate) async fn rotated_keys(&self, provider: &Provider) -> Result<Option<CoreJsonWebKeySet>, OidcError> {
        self.refetch_jwks(provider).await
    }
}

type ClientWithUrls = openidconnect::Client<
    openidconnect::EmptyAdditionalClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    openidconnect::core::CoreAuthPrompt,
    openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    openidconnect::core::CoreTokenResponse,
    openidconnect::core::CoreTokenIntrospectionResponse,
    openidconnect::core::CoreRevocableToken,
    openidconnect::core::CoreRevocationErrorResponse,
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

/// The configured issuer, byte for byte: OpenID Connect Discovery §4.3 requires an exact match.
fn issuer_exact(config: &OidcProviderConfig) -> IssuerUrl {
    let raw = config.issuer.as_str();
    // `Url` adds a trailing slash to bare hosts; the IdP's issuer usually has none.
    let raw = if config.issuer.path() == "/" { raw.trim_end_matches('/') } else { raw };
    IssuerUrl::new(raw.to_owned()).expect("validated when the configuration was loaded")
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

/// The full error chain as one line, for messages and logs (never contains tokens).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The JSON payload of a compact JWT (already verified by the caller).
fn jwt_payload(jwt: &str) -> Option<serde_json::Map<String, Value>> {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A claim at a dotted path (`realm_access.roles`).
pub fn lookup<'a>(claims: &'a serde_json::Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut current = claims.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

/// Claim the in-flight login for `state`: it must exist, be fresh, belong to this browser and to
/// this provider. It is deleted either way (single use).
async fn take_login(
    db: &Db,
    provider_id: &str,
    binding: Option<&str>,
    state: &str,
) -> Result<(String, String, String), OidcError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        binding_hash: String,
        provider_id: String,
        pkce_verifier: String,
        nonce: String,
        next_path: String,
        expires_at: i64,
    }
    let state_hash = crate::keys::sha256_hex(state);
    let mut tx = db.begin().await?;
    let row: Option<Row> = sqlx::query_as(
        "SELECT binding_hash, provider_id, pkce_verifier, nonce, next_path, expires_at FROM oidc_logins WHERE state_hash = $1",
    )
    .bind(&state_hash)
    .fetch_optional(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM oidc_logins WHERE state_hash = $1").bind(&state_hash).execute(&mut *tx).await?;
    tx.commit().await?;
    let row = row.ok_or(OidcError::Stale)?;
    let bound = binding.is_some_and(|b| crate::keys::sha256_hex(b) == row.binding_hash);
    if !bound {
        return Err(OidcError::Rejected("the sign-in was started in another browser".into()));
    }
    if row.provider_id != provider_id {
        // A response for one IdP delivered to another's callback: a mix-up attack.
        return Err(OidcError::Rejected("the sign-in was started with a different identity provider".into()));
    }
    if row.expires_at < now_ms() {
        return Err(OidcError::Stale);
    }
    Ok((row.pkce_verifier, row.nonce, row.next_path))
}

/// Drop abandoned sign-ins (housekeeping).
pub async fn sweep(conn: &mut AnyConnection) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM oidc_logins WHERE expires_at < $1").bind(now_ms()).execute(conn).await?;
    Ok(done.rows_affected())
}
