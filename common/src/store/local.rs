//! Objects as files under a directory.

use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use super::{ObjectInfo, ObjectStore, StoreError};

pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// Keys are relative paths of normal components only, so nothing escapes the root.
    fn path(&self, op: &'static str, key: &str) -> Result<PathBuf, StoreError> {
        let relative = Path::new(key);
        if key.is_empty() || !relative.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(StoreError::Rejected { op, key: key.into(), source: "invalid object key".into() });
        }
        Ok(self.root.join(relative))
    }
}

fn op_error(op: &'static str, key: &str, err: std::io::Error) -> StoreError {
    if err.kind() == std::io::ErrorKind::NotFound {
        StoreError::NotFound { key: key.into() }
    } else {
        StoreError::Op { op, key: key.into(), source: err.into() }
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        let path = self.path("put", key)?;
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(|e| op_error("put", key, e))?;
        }
        // Write then rename, so a reader never sees half an object.
        let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4()));
        tokio::fs::write(&tmp, &data).await.map_err(|e| op_error("put", key, e))?;
        tokio::fs::rename(&tmp, &path).await.map_err(|e| op_error("put", key, e))
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let path = self.path("get", key)?;
        tokio::fs::read(&path).await.map(Bytes::from).map_err(|e| op_error("get", key, e))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path("delete", key)?;
        match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(op_error("delete", key, e)),
            _ => Ok(()),
        }
    }

    /// Walks the directory: fine for the standalone binary's store, whose size a disk bounds.
    async fn list(&self, prefix: &str, after: Option<&str>, max: usize) -> Result<Vec<ObjectInfo>, StoreError> {
        let root = self.root.clone();
        let (prefix, after) = (prefix.to_owned(), after.unwrap_or("").to_owned());
        let listed = tokio::task::spawn_blocking(move || {
            let mut found = Vec::new();
            let mut dirs = vec![root.clone()];
            while let Some(dir) = dirs.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(op_error("list", &prefix, e)),
                };
                for entry in entries {
                    let entry = entry.map_err(|e| op_error("list", &prefix, e))?;
                    let meta = entry.metadata().map_err(|e| op_error("list", &prefix, e))?;
                    let path = entry.path();
                    if meta.is_dir() {
                        dirs.push(path);
                        continue;
                    }
                    let Some(key) = path.strip_prefix(&root).ok().and_then(|p| p.to_str()).map(str::to_owned) else {
                        continue;
                    };
                    // Half-written objects (`put` renames them into place) are not objects yet.
                    if key.contains(".tmp-") || !key.starts_with(&prefix) || key.as_str() <= after.as_str() {
                        continue;
                    }
                    let last_modified = meta.modified().ok().map(chrono::DateTime::<chrono::Utc>::from);
                    found.push(ObjectInfo { key, size: meta.len(), last_modified });
                }
            }
            found.sort_by(|a, b| a.key.cmp(&b.key));
            found.truncate(max);
            Ok(found)
        })
        .await
        .map_err(|e| StoreError::Op { op: "list", key: String::new(), source: e.into() })??;
        Ok(listed)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        tokio::fs::create_dir_all(&self.root).await.map_err(|e| StoreError::Unreachable(e.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trips_and_refuses_escaping_keys() {
        let root = std::env::temp_dir().join(format!("livemix-store-{}", uuid::Uuid::new_v4()));
        let store = LocalStore::new(root.clone());
        store.put("recordings/src/seg-1.ts", Bytes::from_static(b"ts")).await.unwrap();
        assert_eq!(store.get("recordings/src/seg-1.ts").await.unwrap(), Bytes::from_static(b"ts"));
        assert!(matches!(store.get("recordings/src/none.ts").await, Err(StoreError::NotFound { .. })));
        for bad in ["../escape", "/abs", ""] {
            let err = store.put(bad, Bytes::new()).await.unwrap_err();
            assert!(err.is_permanent(), "{bad:?}: {err}");
        }
        store.delete("recordings/src/seg-1.ts").await.unwrap();
        store.delete("recordings/src/seg-1.ts").await.unwrap();
        let _ = std::fs::remove_dir_all(root);
    }
}
