//! The filesystem object store: keys map to paths under a root directory, with the
//! same layout as S3 (`feedback/tenant=…/year=…/…`).

use std::path::PathBuf;

use async_trait::async_trait;

use shared::ports::{ObjectStore, ObjectStoreError};
use shared::ObjectKey;

pub struct FilesystemObjectStore {
    root: PathBuf,
}

impl FilesystemObjectStore {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    fn path(&self, key: &ObjectKey) -> PathBuf {
        // ObjectKey has no empty, `.` or `..` segments, so this never leaves the root.
        self.root.join(key.as_str())
    }
}

fn io(error: std::io::Error) -> ObjectStoreError {
    ObjectStoreError::Unavailable(Box::new(error))
}

#[async_trait]
impl ObjectStore for FilesystemObjectStore {
    async fn put(&self, key: &ObjectKey, body: Vec<u8>, _content_type: &str) -> Result<(), ObjectStoreError> {
        let path = self.path(key);
        // Write aside, then rename: readers see the old or the new object, never half of
        // one. All three steps in one trip to the blocking pool, not one trip each.
        let written = tokio::task::spawn_blocking(move || {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let temporary = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
            std::fs::write(&temporary, body)?;
            std::fs::rename(&temporary, &path)
        })
        .await
        .map_err(|joined| io(std::io::Error::other(joined)))?;
        written.map_err(io)
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<Vec<u8>>, ObjectStoreError> {
        match tokio::fs::read(self.path(key)).await {
            Ok(body) => Ok(Some(body)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(io(error)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectKey>, ObjectStoreError> {
        let mut keys = Vec::new();
        let mut pending = vec![self.root.clone()];
        while let Some(dir) = pending.pop() {
            let mut entries = match tokio::fs::read_dir(&dir).await {
                Ok(entries) => entries,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => return Err(io(error)),
            };
            while let Some(entry) = entries.next_entry().await.map_err(io)? {
                let path = entry.path();
                if entry.file_type().await.map_err(io)?.is_dir() {
                    pending.push(path);
                    continue;
                }
                let Ok(relative) = path.strip_prefix(&self.root) else {
                    continue;
                };
                let key = relative.to_string_lossy().replace(std::path::MAIN_SEPARATOR, "/");
                if key.starts_with(prefix) && !key.contains(".tmp-") {
                    if let Ok(key) = ObjectKey::parse(&key) {
                        keys.push(key);
                    }
                }
            }
        }
        keys.sort();
        Ok(keys)
    }
}
