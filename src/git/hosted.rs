//! The HTTP clients of hosted-provider connections, built once from a connection's stored
//! settings and sealed secrets and shared by every project using it (so its token cache and rate
//! governor see all of that connection's traffic). A connection that changes is forgotten and
//! rebuilt on next use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::connections::{self, ConnectionError};
use super::github::client::Client;
use super::{GitError, GitResult};
use crate::db::Db;
use crate::keys::Keys;

pub struct HostedClients {
    db: Db,
    keys: Arc<Keys>,
    clients: Mutex<HashMap<String, Arc<Client>>>,
    /// The last answer of [`HostedClients::reachable`], and when it was asked.
    reached: Mutex<Option<(std::time::Instant, Reached)>>,
}

type Reached = Vec<(String, Result<Vec<super::github::app::Installation>, String>)>;

impl std::fmt::Debug for HostedClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HostedClients")
    }
}

impl HostedClients {
    pub fn new(db: Db, keys: Arc<Keys>) -> HostedClients {
        HostedClients { db, keys, clients: Mutex::default(), reached: Mutex::default() }
    }

    /// The client of connection `name` (`NotFound` when there is none).
    pub async fn get(&self, name: &str) -> GitResult<Arc<Client>> {
        if let Some(c) = self.clients.lock().expect("clients lock").get(name) {
            return Ok(c.clone());
        }
        let database = |e: crate::error::AppError| GitError::Upstream(format!("database: {e}"));
        let mut conn = self.db.pool().acquire().await.map_err(|e| database(e.into()))?;
        let failed = |e: ConnectionError| match e {
            ConnectionError::NotFound => GitError::NotFound(format!("git connection {name}")),
            other => GitError::Upstream(format!("git connection {name}: {other}")),
        };
        let view = connections::get(&mut conn, name).await.map_err(failed)?;
        let secrets = connections::secrets(&mut conn, &self.keys, name).await.map_err(failed)?;
        drop(conn);
        let key = connections::parse_private_key(&secrets.private_key_pem)
            .map_err(|e| GitError::Unauthorized(format!("git connection {name}: the private key {e}")))?;
        let issuer = view.client_id.clone().unwrap_or_else(|| view.app_id.clone());
        let client = Client::new(name, &view.api_url, &view.graphql_url, &issuer, key, secrets.ca_bundle.as_deref())
            .map_err(|e| GitError::Upstream(format!("git connection {name}: {e}")))?
            .with_client_id(view.client_id.clone());
        let client = Arc::new(client);
        self.clients.lock().expect("clients lock").insert(name.to_owned(), client.clone());
        Ok(client)
    }

    /// Drop the client of a connection that changed or went away.
    pub fn forget(&self, name: &str) {
        self.clients.lock().expect("clients lock").remove(name);
        self.reached.lock().expect("reached lock").take();
    }

    /// What each connection reaches (its App's installations and their repositories), asked of
    /// GitHub with at most `timeout` per connection unless an answer younger than `max_age` is
    /// at hand; a connection that cannot be asked says why.
    pub async fn reachable(&self, timeout: std::time::Duration, max_age: std::time::Duration) -> GitResult<Reached> {
        if let Some((at, reached)) = self.reached.lock().expect("reached lock").as_ref()
            && at.elapsed() < max_age
        {
            return Ok(reached.clone());
        }
        let database = |e: crate::error::AppError| GitError::Upstream(format!("database: {e}"));
        let names: Vec<String> = {
            let mut conn = self.db.pool().acquire().await.map_err(|e| database(e.into()))?;
            let listed = connections::list(&mut conn).await.map_err(|e| database(e.into()))?;
            listed.into_iter().map(|c| c.name).collect()
        };
        let lookups = names.into_iter().map(|name| async move {
            let listed = async {
                let client = self.get(&name).await.map_err(|e| e.to_string())?;
                super::github::app::installations(&client).await.map_err(|e| e.to_string())
            };
            let result = match tokio::time::timeout(timeout, listed).await {
                Ok(r) => r,
                Err(_) => Err(format!("GitHub did not answer within {} seconds", timeout.as_secs())),
            };
            (name, result)
        });
        let reached = futures_util::future::join_all(lookups).await;
        *self.reached.lock().expect("reached lock") = Some((std::time::Instant::now(), reached.clone()));
        Ok(reached)
    }

    /// The clients built so far (the console shows their rate-limit state).
    pub fn built(&self) -> Vec<Arc<Client>> {
        self.clients.lock().expect("clients lock").values().cloned().collect()
    }
}
