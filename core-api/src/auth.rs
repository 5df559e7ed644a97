//! Tenant API keys.
//!
//! A key looks like `sk_<32 hex: key id>_<64 hex: secret>`. It is shown once, when it
//! is issued; the store keeps only the key id and the SHA-256 of the whole key. The
//! `sk_` prefix makes leaked keys easy to recognise (and to scan for).

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::HttpRequest;
use rand::RngCore;
use sha2::{Digest, Sha256};

use shared::domain::ApiKeyRecord;
use shared::ports::{StoreError, TenantDirectory};
use shared::{ApiKeyId, TenantId, Timestamp};

use crate::problem::ApiError;

pub const KEY_PREFIX: &str = "sk_";

/// A freshly issued key: the record that was stored and the plaintext to show once.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    pub record: ApiKeyRecord,
    pub plaintext: String,
}

fn hash(plaintext: &str) -> String {
    hex::encode(Sha256::digest(plaintext.as_bytes()))
}

/// Creates and stores a new key for `tenant`.
pub async fn issue_api_key(tenants: &dyn TenantDirectory, tenant: TenantId) -> Result<IssuedKey, StoreError> {
    let id = ApiKeyId::new();
    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    let plaintext = format!("{KEY_PREFIX}{}_{}", id.as_uuid().simple(), hex::encode(secret));
    let record = ApiKeyRecord {
        id,
        tenant_id: tenant,
        secret_hash: hash(&plaintext),
        created_at: Timestamp::now(),
        revoked_at: None,
    };
    tenants.create_api_key(&record).await?;
    Ok(IssuedKey { record, plaintext })
}

/// Splits `sk_<id>_<secret>` into the key id; `None` when it has the wrong shape.
fn key_id(plaintext: &str) -> Option<ApiKeyId> {
    let rest = plaintext.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    if secret.len() != 64 || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    ApiKeyId::parse(&format!("{}_{id}", ApiKeyId::PREFIX)).ok()
}

/// Compares secrets without stopping at the first difference (no timing hint).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Recently verified keys, so that a busy client costs one store lookup per minute
/// rather than one per request. A revoked key keeps working for at most [`KEY_CACHE_TTL`]
/// in each API process.
#[derive(Default)]
pub struct KeyCache {
    entries: RwLock<HashMap<ApiKeyId, (ApiKeyRecord, Instant)>>,
}

pub const KEY_CACHE_TTL: Duration = Duration::from_secs(60);
const KEY_CACHE_CAPACITY: usize = 10_000;

impl KeyCache {
    async fn lookup(&self, tenants: &dyn TenantDirectory, id: ApiKeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
        if let Ok(entries) = self.entries.read() {
            if let Some((record, fetched)) = entries.get(&id) {
                if fetched.elapsed() < KEY_CACHE_TTL {
                    return Ok(Some(record.clone()));
                }
            }
        }
        let found = tenants.api_key(id).await?;
        if let (Some(record), Ok(mut entries)) = (&found, self.entries.write()) {
            if entries.len() >= KEY_CACHE_CAPACITY {
                entries.retain(|_, (_, fetched)| fetched.elapsed() < KEY_CACHE_TTL);
                if entries.len() >= KEY_CACHE_CAPACITY {
                    entries.clear();
                }
            }
            entries.insert(id, (record.clone(), Instant::now()));
        }
        Ok(found)
    }
}

/// The tenant a request's `Authorization: Bearer sk_…` header belongs to.
pub async fn authenticate(
    request: &HttpRequest,
    tenants: &dyn TenantDirectory,
    keys: &KeyCache,
) -> Result<TenantId, ApiError> {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::Unauthorized("missing `Authorization: Bearer <API key>` header"))?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .ok_or(ApiError::Unauthorized("the Authorization header must use the Bearer scheme"))?;
    const UNKNOWN: ApiError = ApiError::Unauthorized("unknown or revoked API key");
    let id = key_id(token).ok_or(UNKNOWN)?;
    let record = keys.lookup(tenants, id).await?.ok_or(UNKNOWN)?;
    if record.revoked_at.is_some() || !constant_time_eq(record.secret_hash.as_bytes(), hash(token).as_bytes()) {
        return Err(UNKNOWN);
    }
    Ok(record.tenant_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_well_formed_keys() {
        let id = ApiKeyId::new();
        let good = format!("sk_{}_{}", id.as_uuid().simple(), "a".repeat(64));
        assert_eq!(key_id(&good), Some(id));
        assert_eq!(key_id(&good.replacen("sk_", "pk_", 1)), None);
        assert_eq!(key_id(&good[..good.len() - 1]), None);
        assert_eq!(key_id("sk_"), None);
        assert_eq!(key_id(&format!("sk_{}_{}", id.as_uuid().simple(), "z".repeat(64))), None);
    }

    #[test]
    fn compares_in_constant_time_shape() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
