//! Object storage over `object_store`: the local filesystem (`file://`, the default) or any
//! S3-compatible store (`s3://bucket/prefix`: MinIO, Ceph RGW, AWS S3).
//!
//! Keys are relative, slash-separated paths (`snapshots/…`). Content-addressed data uses
//! [`content_key`]. On the local filesystem a `put` is fsynced (file and directory) before it
//! returns, so "stored" means "survives a power cut", as on S3.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{ClientOptions, ObjectStore, PutPayload, RetryConfig};
use sha2::{Digest, Sha256};

use crate::config::Config;

#[derive(Clone, Debug)]
enum Kind {
    Local { root: PathBuf },
    S3 { bucket: String },
}

#[derive(Clone, Debug)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    kind: Kind,
    local: Option<Arc<LocalFileSystem>>,
}

/// Metadata of one stored object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid object key `{0}`")]
    InvalidKey(String),
    #[error(transparent)]
    Store(#[from] object_store::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The key under which content with this SHA-256 is stored: `sha256/ab/abcdef…`.
pub fn content_key(data: &[u8]) -> String {
    let digest = hex::encode(Sha256::digest(data));
    format!("sha256/{}/{}", &digest[..2], digest)
}

fn key_path(key: &str) -> Result<ObjectPath, StorageError> {
    let invalid =
        key.is_empty() || key.starts_with('/') || key.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..");
    if invalid {
        return Err(StorageError::InvalidKey(key.to_owned()));
    }
    ObjectPath::parse(key).map_err(|_| StorageError::InvalidKey(key.to_owned()))
}

impl Storage {
    pub async fn from_config(config: &Config) -> anyhow::Result<Storage> {
        let url = &config.storage_url;
        match url.scheme() {
            "file" => {
                let root = url.to_file_path().map_err(|_| anyhow::anyhow!("storage URL is not a local path"))?;
                tokio::fs::create_dir_all(&root)
                    .await
                    .with_context(|| format!("creating object directory {}", root.display()))?;
                let fs = Arc::new(LocalFileSystem::new_with_prefix(&root).context("opening object directory")?);
                Ok(Storage { store: fs.clone(), kind: Kind::Local { root }, local: Some(fs) })
            }
            "s3" => {
                let bucket = url.host_str().unwrap_or_default().to_owned();
                let prefix = url.path().trim_matches('/').to_owned();
                let s3 = &config.s3;
                let mut builder = AmazonS3Builder::new()
                    .with_bucket_name(&bucket)
                    .with_region(&s3.region)
                    .with_retry(RetryConfig {
                        max_retries: 3,
                        retry_timeout: Duration::from_secs(30),
                        ..RetryConfig::default()
                    })
                    .with_client_options(
                        ClientOptions::new()
                            .with_connect_timeout(Duration::from_secs(5))
                            .with_timeout(Duration::from_secs(60)),
                    );
                if let Some(endpoint) = &s3.endpoint {
                    // Self-hosted stores (MinIO, Ceph) are addressed path-style.
                    builder = builder
                        .with_endpoint(endpoint.as_str().trim_end_matches('/'))
                        .with_allow_http(endpoint.scheme() == "http")
                        .with_virtual_hosted_style_request(false);
                }
                if let (Some(id), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) {
                    builder = builder.with_access_key_id(id.expose()).with_secret_access_key(secret.expose());
                }
                let store: Arc<dyn ObjectStore> = Arc::new(builder.build().context("configuring the S3 client")?);
                let store: Arc<dyn ObjectStore> =
                    if prefix.is_empty() { store } else { Arc::new(PrefixStore::new(store, prefix.as_str())) };
                Ok(Storage { store, kind: Kind::S3 { bucket }, local: None })
            }
            other => anyhow::bail!("unsupported storage scheme {other}"),
        }
    }

    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Local { root } => format!("file://{}", root.display()),
            Kind::S3 { bucket } => format!("s3://{bucket}"),
        }
    }

    /// Store `data` under `key`, replacing what was there; durable when this returns.
    pub async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        let path = key_path(key)?;
        self.store.put(&path, PutPayload::from_bytes(data)).await?;
        if let Some(fs) = &self.local {
            let file = fs.path_to_filesystem(&path)?;
            tokio::task::spawn_blocking(move || fsync_file_and_dir(&file))
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))??;
        }
        Ok(())
    }

    /// Store content under its own hash and return the key.
    pub async fn put_content(&self, data: Bytes) -> Result<String, StorageError> {
        let key = content_key(&data);
        if self.head(&key).await?.is_none() {
            self.put(&key, data).await?;
        }
        Ok(key)
    }

    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        let path = key_path(key)?;
        match self.store.get(&path).await {
            Ok(r) => Ok(Some(r.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        let path = key_path(key)?;
        match self.store.head(&path).await {
            Ok(m) => Ok(Some(ObjectInfo { key: key.to_owned(), size: m.size })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Every object under `prefix` (a folder-like key prefix; empty for all), sorted by key.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let prefix = prefix.trim_end_matches('/');
        let path = if prefix.is_empty() { None } else { Some(key_path(prefix)?) };
        let mut out: Vec<ObjectInfo> = self
            .store
            .list(path.as_ref())
            .map_ok(|m| ObjectInfo { key: m.location.to_string(), size: m.size })
            .try_collect()
            .await?;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Delete `key`; deleting a missing object is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = key_path(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Readiness: can we reach the store? Local: the root is a writable directory. S3: a HEAD
    /// on a probe key answers (found or not found) within the timeout.
    pub async fn check(&self, timeout: Duration) -> Result<(), String> {
        let probe = async {
            match &self.kind {
                Kind::Local { root } => {
                    let meta = tokio::fs::metadata(root).await.map_err(|e| format!("{}: {e}", root.display()))?;
                    if !meta.is_dir() {
                        return Err(format!("{} is not a directory", root.display()));
                    }
                    if meta.permissions().readonly() {
                        return Err(format!("{} is read-only", root.display()));
                    }
                    Ok(())
                }
                Kind::S3 { .. } => match self.store.head(&ObjectPath::from(".arno-ready-probe")).await {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(short_error(&e)),
                },
            }
        };
        match tokio::time::timeout(timeout, probe).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        }
    }
}

/// A one-line reason without request URLs or headers.
fn short_error(e: &object_store::Error) -> String {
    match e {
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
            "access denied (check the S3 credentials)".into()
        }
        _ => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            first.chars().take(200).collect()
        }
    }
}

fn fsync_file_and_dir(file: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(file)?.sync_all()?;
    if let Some(dir) = file.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_be_relative_and_clean() {
        for bad in ["", "/abs", "a//b", "a/../b", "./a", "a/"] {
            assert!(key_path(bad).is_err(), "{bad:?} accepted");
        }
        assert!(key_path("snapshots/p1/0001.bin").is_ok());
    }

    #[test]
    fn content_keys_are_sha256() {
        assert_eq!(content_key(b"abc"), "sha256/ba/ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
