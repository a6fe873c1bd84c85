//! Where a file feed's files are: the [`Store`] contract, and its local-folder and S3
//! implementations (through `object_store`, as the lake). The SFTP one is [`super::sftp`].

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result, classify_object_store};

/// A file as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the store's root, `/`-separated.
    pub path: String,
    pub size: u64,
    /// Modification time, Unix seconds.
    pub modified: i64,
}

/// A file's bytes on this machine: the folder's own file, or a copy fetched into the
/// spool folder, removed when dropped.
pub enum Local {
    InPlace(PathBuf),
    Fetched(Spooled),
}

impl Local {
    pub fn path(&self) -> &FsPath {
        match self {
            Local::InPlace(p) => p,
            Local::Fetched(s) => &s.0,
        }
    }
}

/// A fetched copy, removed when dropped.
pub struct Spooled(PathBuf);

impl Spooled {
    /// A new file in the spool folder (the system's temporary folder, `TMPDIR`).
    pub async fn create() -> Result<(Spooled, tokio::fs::File)> {
        let dir = std::env::temp_dir().join("sluice-spool");
        tokio::fs::create_dir_all(&dir).await.map_err(|e| {
            Error::external(format!(
                "cannot create the spool folder {}: {e}",
                dir.display()
            ))
        })?;
        // Copies a killed run left behind (a day old: no live run is still writing them).
        static SWEPT: std::sync::Once = std::sync::Once::new();
        SWEPT.call_once(|| {
            let day_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(86_400);
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let stale = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t < day_ago);
                if stale {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        });
        let path = dir.join(uuid::Uuid::new_v4().simple().to_string());
        let file = tokio::fs::File::create(&path).await.map_err(|e| {
            Error::external(format!(
                "cannot create {} to fetch a file into: {e}",
                path.display()
            ))
        })?;
        Ok((Spooled(path), file))
    }
}

impl Drop for Spooled {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What one folder holds, directly.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub files: Vec<Entry>,
    /// Its subfolders, relative to the store's root.
    pub folders: Vec<String>,
}

/// A store of files. Paths are relative to its root.
#[async_trait]
pub trait Store: Send + Sync {
    /// The files and subfolders directly in `folder`. A folder that does not exist
    /// (yet) holds nothing: it is not an error, so a job can be set up before the
    /// sender makes its folder.
    async fn list(&self, folder: &str) -> Result<Listing>;

    /// Every file below `folder`, at any depth, when the store lists a whole tree in
    /// one go cheaper than folder by folder (S3, by prefix); `None`: walk it.
    async fn list_tree(&self, _folder: &str) -> Result<Option<Vec<Entry>>> {
        Ok(None)
    }

    /// The file's bytes on this machine; a copy must hold exactly `size` bytes, or the
    /// file changed while it was fetched (retryable).
    async fn fetch(&self, path: &str, size: u64) -> Result<Local>;

    /// The hex SHA-256 of the file's bytes (as stored) and their count, streamed: no
    /// copy is kept.
    async fn sha256(&self, path: &str) -> Result<(String, u64)>;

    /// Removes a file; one already gone is fine (actions are finished by later runs).
    async fn delete(&self, path: &str) -> Result<()>;

    /// Moves a file, making the folder it goes to; replaces what is there.
    async fn rename(&self, from: &str, to: &str) -> Result<()>;

    /// The file's address, for messages (no secret in it).
    fn describe(&self, path: &str) -> String;
}

/// Joins a folder and a name.
pub fn join(folder: &str, name: &str) -> String {
    if folder.is_empty() {
        name.to_string()
    } else {
        format!("{}/{name}", folder.trim_end_matches('/'))
    }
}

/// A folder or an S3 prefix, through `object_store`.
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    root: String,
    /// A folder's local path (its files are read in place).
    local: Option<PathBuf>,
    url: String,
}

impl Objects {
    /// A local folder, which must exist.
    pub fn folder(dir: &FsPath) -> Result<Self> {
        let dir = dir.canonicalize().map_err(|e| {
            Error::user(format!(
                "the folder {} cannot be read: {e} (the connection's `path`)",
                dir.display()
            ))
        })?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
            .map_err(|e| classify_object_store(e, "opening the folder"))?;
        Ok(Self {
            store: Arc::new(store),
            root: String::new(),
            url: format!("file://{}", dir.display()),
            local: Some(dir),
        })
    }

    /// A bucket and prefix; region, credentials and endpoint from the AWS chain.
    pub fn s3(bucket: &str, prefix: &str) -> Result<Self> {
        Ok(Self {
            store: Arc::new(crate::aws::s3_store(bucket)?),
            root: prefix.to_string(),
            local: None,
            url: format!("s3://{bucket}"),
        })
    }

    /// The object's path. Parsed, not encoded: a name of any script (`relevés/août.json`)
    /// is the key or file it names; `Path::from` would percent-encode it.
    fn path(&self, relative: &str) -> Path {
        let full = join(&self.root, relative);
        Path::parse(&full).unwrap_or_else(|_| Path::from(full.as_str()))
    }

    fn entry(&self, o: &object_store::ObjectMeta) -> Entry {
        Entry {
            path: self.relative(&o.location),
            size: o.size,
            modified: o.last_modified.timestamp(),
        }
    }

    fn relative(&self, path: &Path) -> String {
        let full = path.as_ref();
        full.strip_prefix(self.root.as_str())
            .unwrap_or(full)
            .trim_start_matches('/')
            .to_string()
    }
}

#[async_trait]
impl Store for Objects {
    async fn list(&self, folder: &str) -> Result<Listing> {
        let prefix = self.path(folder);
        let prefix = (!prefix.as_ref().is_empty()).then_some(prefix);
        let listed = match self.store.list_with_delimiter(prefix.as_ref()).await {
            Ok(listed) => listed,
            Err(object_store::Error::NotFound { .. }) => return Ok(Listing::default()),
            Err(e) => {
                return Err(classify_object_store(
                    e,
                    &format!("listing {}", self.describe(folder)),
                ));
            }
        };
        Ok(Listing {
            files: listed.objects.iter().map(|o| self.entry(o)).collect(),
            folders: listed
                .common_prefixes
                .iter()
                .map(|p| self.relative(p))
                .collect(),
        })
    }

    async fn list_tree(&self, folder: &str) -> Result<Option<Vec<Entry>>> {
        // A folder is walked folder by folder (only where a match can lie); a bucket
        // is listed by prefix, a page of 1000 keys a request.
        if self.local.is_some() {
            return Ok(None);
        }
        let prefix = self.path(folder);
        let prefix = (!prefix.as_ref().is_empty()).then_some(prefix);
        let mut listed = self.store.list(prefix.as_ref());
        let mut files = Vec::new();
        while let Some(object) = listed.next().await {
            match object {
                Ok(o) => files.push(self.entry(&o)),
                Err(object_store::Error::NotFound { .. }) => break,
                Err(e) => {
                    return Err(classify_object_store(
                        e,
                        &format!("listing {}", self.describe(folder)),
                    ));
                }
            }
        }
        Ok(Some(files))
    }

    async fn fetch(&self, path: &str, size: u64) -> Result<Local> {
        if let Some(dir) = &self.local {
            return Ok(Local::InPlace(dir.join(path)));
        }
        let what = self.describe(path);
        let got = self
            .store
            .get(&self.path(path))
            .await
            .map_err(|e| classify_object_store(e, &format!("fetching {what}")))?;
        let (spooled, mut file) = Spooled::create().await?;
        let mut stream = got.into_stream();
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| classify_object_store(e, &format!("fetching {what}")))?;
            written += chunk.len() as u64;
            file.write_all(&chunk)
                .await
                .map_err(|e| Error::external(format!("writing the copy of {what}: {e}")))?;
        }
        file.flush()
            .await
            .map_err(|e| Error::external(format!("writing the copy of {what}: {e}")))?;
        changed_while_fetched(&what, size, written)?;
        Ok(Local::Fetched(spooled))
    }

    async fn sha256(&self, path: &str) -> Result<(String, u64)> {
        let what = self.describe(path);
        if let Some(dir) = &self.local {
            let file = dir.join(path);
            return tokio::task::spawn_blocking(move || {
                let opened = std::fs::File::open(&file)
                    .map_err(|e| Error::external(format!("reading {what}: {e}")))?;
                super::read::Hashing::new(opened)
                    .finish()
                    .map_err(|e| Error::external(format!("reading {what}: {e}")))
            })
            .await
            .map_err(|e| Error::internal(format!("hashing a file failed: {e}")))?;
        }
        let got = self
            .store
            .get(&self.path(path))
            .await
            .map_err(|e| classify_object_store(e, &format!("reading {what}")))?;
        let mut stream = got.into_stream();
        let mut hasher = Sha256::new();
        let mut bytes = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| classify_object_store(e, &format!("reading {what}")))?;
            bytes += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Ok((super::read::hex(&hasher.finalize()), bytes))
    }

    async fn delete(&self, path: &str) -> Result<()> {
        match self.store.delete(&self.path(path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(classify_object_store(
                e,
                &format!("deleting {}", self.describe(path)),
            )),
        }
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        match self.store.rename(&self.path(from), &self.path(to)).await {
            Ok(()) => Ok(()),
            Err(e) => Err(classify_object_store(
                e,
                &format!("moving {} to {to}", self.describe(from)),
            )),
        }
    }

    fn describe(&self, path: &str) -> String {
        format!("{}/{}", self.url, join(&self.root, path))
    }
}

/// A copy of another size than listed: the file is still being written (or was
/// replaced): retryable, the next run reads it whole.
pub fn changed_while_fetched(what: &str, listed: u64, fetched: u64) -> Result<()> {
    if listed == fetched {
        return Ok(());
    }
    Err(Error::external(format!(
        "{what} changed while it was read ({listed} bytes listed, {fetched} read): it is still being written; the next run reads it whole (raise source.files.stable_for, or have the sender write a done_marker)"
    )))
}
