//! The object-store port: result objects under the S3 key layout.

use async_trait::async_trait;

use super::BoxError;
use crate::object_key::ObjectKey;

#[derive(Debug, thiserror::Error)]
pub enum ObjectStoreError {
    #[error("invalid object key: {0}")]
    InvalidKey(String),
    #[error("the object store is unavailable")]
    Unavailable(#[source] BoxError),
    #[error("object store error")]
    Other(#[source] BoxError),
}

impl ObjectStoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, ObjectStoreError::Unavailable(_))
    }
}

/// The object store.
///
/// Contract: `put` replaces an existing object atomically (readers see the old or the
/// new body, never a mix), so writing the same deterministic key on redelivery is safe.
/// `list` returns every key starting with `prefix`, sorted.
#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    async fn put(&self, key: &ObjectKey, body: Vec<u8>, content_type: &str) -> Result<(), ObjectStoreError>;
    async fn get(&self, key: &ObjectKey) -> Result<Option<Vec<u8>>, ObjectStoreError>;
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectKey>, ObjectStoreError>;
}
