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
    issue_api_key_until(tenants, tenant, None).await
}

/// Creates and stores a new key for `tenant`, refused from `expires_at` on when given.
pub async fn issue_api_key_until(
    tenants: &dyn TenantDirectory,
    tenant: TenantId,
    expires_at: Option<Timestamp>,
) -> Result<IssuedKey, StoreError> {
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
        expires_at,
        last_used_at: None,
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
/// rather than one per request. Revocations reach every API process within
/// [`REVOCATION_POLL`] plus a request: [`watch_keys`] asks the store every interval which
/// keys were revoked since its previous look (an index probe on `revoked_at`) and drops
/// them; an expiry needs no news, the cached record carries it. Each key's use is
/// recorded at most once a [`USE_INTERVAL`] per process, in one batched write.
#[derive(Default)]
pub struct KeyCache {
    entries: RwLock<HashMap<ApiKeyId, (ApiKeyRecord, Instant)>>,
    /// When this process last noted each key's use, and the uses not yet written.
    uses: RwLock<Uses>,
}

#[derive(Default)]
struct Uses {
    noted: HashMap<ApiKeyId, Instant>,
    pending: HashMap<ApiKeyId, Timestamp>,
}

pub const KEY_CACHE_TTL: Duration = Duration::from_secs(60);
/// How often each API process asks for revocations and writes uses.
pub const REVOCATION_POLL: Duration = Duration::from_secs(2);
/// A key's last use is recorded at most this often per process.
pub const USE_INTERVAL: Duration = Duration::from_secs(60);
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

    fn forget(&self, ids: &[ApiKeyId]) {
        if let Ok(mut entries) = self.entries.write() {
            for id in ids {
                entries.remove(id);
            }
        }
    }

    fn note_use(&self, id: ApiKeyId, now: Timestamp) {
        // Nearly every request finds its key noted within the minute: a shared read,
        // so concurrent requests do not queue on a lock.
        let due = |uses: &Uses| uses.noted.get(&id).is_none_or(|at| at.elapsed() >= USE_INTERVAL);
        if self.uses.read().map(|uses| !due(&uses)).unwrap_or(true) {
            return;
        }
        if let Ok(mut uses) = self.uses.write() {
            if !due(&uses) {
                return;
            }
            if uses.noted.len() >= KEY_CACHE_CAPACITY {
                uses.noted.retain(|_, at| at.elapsed() < USE_INTERVAL);
            }
            uses.noted.insert(id, Instant::now());
            uses.pending.insert(id, now);
        }
    }

    fn take_uses(&self) -> Vec<(ApiKeyId, Timestamp)> {
        self.uses.write().map(|mut uses| uses.pending.drain().collect()).unwrap_or_default()
    }
}

/// Keeps `keys` in step with the store until `shutdown`: every [`REVOCATION_POLL`] it
/// drops the keys revoked since its previous look and writes the uses noted meanwhile.
pub async fn watch_keys(
    keys: std::sync::Arc<KeyCache>,
    tenants: std::sync::Arc<dyn TenantDirectory>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    // Revocations are stamped by the control plane's clock: look back a little further
    // than the last look, and at start as far as a cache entry lives.
    const SKEW: Duration = Duration::from_secs(5);
    let mut since = Timestamp::now().minus(KEY_CACHE_TTL);
    loop {
        let looked = Timestamp::now();
        match tenants.keys_revoked_since(since).await {
            Ok(revoked) => {
                keys.forget(&revoked);
                since = looked.minus(SKEW);
            }
            Err(error) => {
                tracing::warn!(%error, "could not look for revoked API keys; cached keys stay until they age out")
            }
        }
        let uses = keys.take_uses();
        if let Err(error) = tenants.record_key_use(&uses).await {
            tracing::warn!(%error, keys = uses.len(), "could not record API key use");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(REVOCATION_POLL) => {}
        }
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
    const UNKNOWN: ApiError = ApiError::Unauthorized("unknown, revoked or expired API key");
    let id = key_id(token).ok_or(UNKNOWN)?;
    let record = keys.lookup(tenants, id).await?.ok_or(UNKNOWN)?;
    let now = Timestamp::now();
    if !record.usable_at(now) || !constant_time_eq(record.secret_hash.as_bytes(), hash(token).as_bytes()) {
        return Err(UNKNOWN);
    }
    keys.note_use(record.id, now);
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
