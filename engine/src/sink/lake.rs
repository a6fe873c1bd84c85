//! The lake: a local folder or an `s3://bucket/prefix`, through `object_store`.
//!
//! Layout, for lake table `orders`:
//! ```text
//! orders/dt=2024-05-01/part-<run key>-00000.parquet   data (what Athena reads)
//! _sluice/manifests/orders/<run key>.json             what each committed run wrote
//! _sluice/keys/orders/<run key>.<unix seconds>.keys    a feed's record keys (source.dedup)
//! ```
//! Every data file's name carries the key of the run that wrote it, which is how a failed
//! attempt's files are found and removed, and how a full reload finds the files it
//! replaces.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::{Error, Result, classify_object_store};

#[derive(Debug, Clone)]
pub struct Lake {
    store: Arc<dyn ObjectStore>,
    /// Where the lake starts inside the store (the S3 prefix; empty for a folder).
    root: Path,
    /// The lake as the user named it, with a scheme: `file:///abs/path` or `s3://b/p`.
    url: String,
}

impl Lake {
    /// Opens `s3://bucket/prefix` (credentials, region and endpoint from the standard
    /// AWS variables) or a local folder, which is created if missing.
    pub fn open(location: &str) -> Result<Lake> {
        if let Some(rest) = location.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let store = crate::aws::s3_store(bucket)
                .map_err(|e| e.context(format!("opening lake {location}")))?;
            return Ok(Lake {
                store: Arc::new(store),
                root: Path::from(prefix.trim_matches('/')),
                url: format!("s3://{bucket}/{}", prefix.trim_matches('/')),
            });
        }
        if location.contains("://") && !location.starts_with("file://") {
            return Err(Error::user(format!(
                "lake {location:?} is not supported: use a folder or s3://bucket/prefix"
            )));
        }
        let dir = std::path::PathBuf::from(location.trim_start_matches("file://"));
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::user(format!(
                "cannot create the lake folder {}: {e}",
                dir.display()
            ))
        })?;
        let dir = dir
            .canonicalize()
            .map_err(|e| Error::user(format!("lake folder {}: {e}", dir.display())))?;
        let store = LocalFileSystem::new_with_prefix(&dir)
            .map_err(|e| classify_object_store(e, "opening the lake folder"))?
            .with_automatic_cleanup(true);
        Ok(Lake {
            store: Arc::new(store),
            root: Path::default(),
            url: format!("file://{}", dir.display()),
        })
    }

    /// An in-memory lake, for tests.
    pub fn in_memory() -> Lake {
        Lake {
            store: Arc::new(object_store::memory::InMemory::new()),
            root: Path::default(),
            url: "memory:///".into(),
        }
    }

    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// Bytes a file being written buffers before its upload goes on in parts: S3 takes
    /// parts of 5 MiB or more; a folder takes any.
    pub fn upload_part(&self) -> usize {
        if self.url.starts_with("s3://") {
            5 << 20
        } else {
            1 << 20
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// A path below the lake's root. `relative` is already escaped (Hive escaping of
    /// partition values): it is taken as is, not encoded again.
    pub fn path(&self, relative: &str) -> Result<Path> {
        let root = self.root.as_ref();
        let parts: Vec<&str> = root
            .split('/')
            .chain(relative.split('/'))
            .filter(|p| !p.is_empty())
            .collect();
        let joined = parts.join("/");
        Path::parse(&joined).map_err(|e| Error::internal(format!("lake path {joined:?}: {e}")))
    }

    /// The path relative to the lake's root, as manifests record it.
    pub fn relative(&self, path: &Path) -> String {
        let root = self.root.as_ref();
        let full = path.as_ref();
        full.strip_prefix(root)
            .unwrap_or(full)
            .trim_start_matches('/')
            .to_string()
    }

    /// Where `table` is for a reader that resolves URLs against the store's root (the
    /// Delta log): that root store and the table's URL. A folder lake's root is the
    /// file system's; a bucket lake's is the bucket's.
    pub fn table_location(&self, table: &str) -> Result<(Arc<dyn ObjectStore>, url::Url)> {
        let url = url::Url::parse(&format!("{}/{table}", self.url.trim_end_matches('/')))
            .map_err(|e| Error::internal(format!("table {table}'s URL: {e}")))?;
        let root: Arc<dyn ObjectStore> = if url.scheme() == "file" {
            Arc::new(LocalFileSystem::new())
        } else {
            self.store.clone()
        };
        Ok((root, url))
    }

    /// How DataFusion reaches a file of the lake: the store's URL (registered by
    /// `register_store`, or the file system's) and the path in that store.
    pub fn scan_location(&self, relative: &str) -> Result<(String, Path)> {
        match (self.url.strip_prefix("file://"), self.bucket_url()?) {
            (Some(dir), _) => {
                let full = format!("{}/{relative}", dir.trim_end_matches('/'));
                let path = Path::parse(full.trim_start_matches('/'))
                    .map_err(|e| Error::internal(format!("lake path {full:?}: {e}")))?;
                Ok(("file:///".to_string(), path))
            }
            (None, bucket) => Ok((
                bucket.map_or_else(String::new, |b| b.to_string()),
                self.path(relative)?,
            )),
        }
    }

    /// Lets `ctx` read the lake's bucket (a folder lake needs nothing).
    pub fn register_store(&self, ctx: &datafusion::prelude::SessionContext) -> Result<()> {
        if let Some(bucket) = self.bucket_url()? {
            ctx.register_object_store(&bucket, self.store());
        }
        Ok(())
    }

    /// `s3://bucket` (the store a bucket lake's paths are in); `None` for a folder lake.
    fn bucket_url(&self) -> Result<Option<url::Url>> {
        let base =
            url::Url::parse(&self.url).map_err(|e| Error::internal(format!("lake url: {e}")))?;
        if base.scheme() == "file" {
            return Ok(None);
        }
        url::Url::parse(&format!(
            "{}://{}",
            base.scheme(),
            base.host_str().unwrap_or_default()
        ))
        .map(Some)
        .map_err(|e| Error::internal(format!("lake url: {e}")))
    }

    pub fn table_dir(&self, table: &str) -> Result<Path> {
        self.path(table)
    }

    pub fn manifest_path(&self, table: &str, run_key: &str) -> Result<Path> {
        self.path(&format!("_sluice/manifests/{table}/{run_key}.json"))
    }

    /// Where a feed's committed record keys are (`source.dedup`): one file a run,
    /// `<run key>.<unix seconds>.keys`.
    pub fn keys_dir(&self, table: &str) -> Result<Path> {
        self.path(&format!("_sluice/keys/{table}"))
    }

    /// Every object below `prefix`.
    pub async fn list(&self, prefix: &Path) -> Result<Vec<ObjectMeta>> {
        self.store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(|e| classify_object_store(e, &format!("listing {prefix}")))
    }

    /// Whether any object is below `prefix` (one listing page at most).
    pub async fn holds_any(&self, prefix: &Path) -> Result<bool> {
        use futures::StreamExt;
        match self.store.list(Some(prefix)).next().await {
            None => Ok(false),
            Some(Ok(_)) => Ok(true),
            Some(Err(e)) => Err(classify_object_store(e, &format!("listing {prefix}"))),
        }
    }

    /// Deletes an object; one that is already gone is fine (deletes are retried).
    pub async fn delete(&self, path: &Path) -> Result<()> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(classify_object_store(e, &format!("deleting {path}"))),
        }
    }

    /// Writes a new object; if one is already there, another writer got there first
    /// (S3 conditional put, `If-None-Match: *`), which is refused as busy.
    pub async fn create(&self, path: &Path, bytes: Vec<u8>) -> Result<()> {
        let options = object_store::PutOptions::from(object_store::PutMode::Create);
        match self
            .store
            .put_opts(path, PutPayload::from(bytes), options)
            .await
        {
            Ok(_) => Ok(()),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Err(Error::busy(format!(
                "{path} already exists: another run of the job wrote it"
            ))),
            Err(e) => Err(classify_object_store(e, &format!("writing {path}"))),
        }
    }

    /// Uploads a local file to `path`, in parts (its size does not count against memory).
    pub async fn upload(&self, path: &Path, file: &std::path::Path) -> Result<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let local = |e: std::io::Error| {
            Error::external(format!("uploading {} to {path}: {e}", file.display()))
        };
        let mut from = tokio::fs::File::open(file).await.map_err(local)?;
        let mut to = object_store::buffered::BufWriter::with_capacity(
            self.store.clone(),
            path.clone(),
            self.upload_part(),
        );
        let mut buffer = vec![0; 1 << 20];
        loop {
            let n = from.read(&mut buffer).await.map_err(local)?;
            if n == 0 {
                break;
            }
            to.write_all(&buffer[..n]).await.map_err(local)?;
        }
        to.shutdown().await.map_err(local)
    }

    /// Reads an object piece by piece (`None` if it is not there): `each` takes every
    /// piece in order.
    pub async fn read_pieces(
        &self,
        path: &Path,
        mut each: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<Option<()>> {
        use futures::StreamExt;
        let got = match self.store.get(path).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(classify_object_store(e, &format!("reading {path}"))),
        };
        let mut stream = got.into_stream();
        while let Some(piece) = stream.next().await {
            each(&piece.map_err(|e| classify_object_store(e, &format!("reading {path}")))?)?;
        }
        Ok(Some(()))
    }

    pub async fn get(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        match self.store.get(path).await {
            Ok(got) => Ok(Some(
                got.bytes()
                    .await
                    .map_err(|e| classify_object_store(e, &format!("reading {path}")))?
                    .to_vec(),
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(classify_object_store(e, &format!("reading {path}"))),
        }
    }
}
