//! Files on an SFTP server, over `russh` and `russh-sftp` (pure Rust, on tokio).
//!
//! The server's host key is pinned: a key with another fingerprint is refused before
//! any credential is sent, and the message says which key the server presented. The
//! password or private key comes from the connection's secret or the environment and is
//! scrubbed from every message. Reads are pipelined (several requests in flight), so a
//! transfer is not bound by the round trip.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use russh::client::{self, AuthResult, Handle};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate, decode_secret_key};
use russh_sftp::client::SftpSession;
use russh_sftp::protocol::StatusCode;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::store::{Entry, Listing, Local, Spooled, Store, changed_while_fetched, join};
use crate::error::{Error, Result};
use crate::job::files::SftpConnection;
use crate::source::redact;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// AES-GCM first: ring's runs on the CPU's AES instructions, several times faster than
/// the portable ChaCha20-Poly1305 that russh prefers (OpenSSH's first choice).
const CIPHERS: &[russh::cipher::Name] = &[
    russh::cipher::AES_256_GCM,
    russh::cipher::AES_128_GCM,
    russh::cipher::CHACHA20_POLY1305,
    russh::cipher::AES_256_CTR,
    russh::cipher::AES_128_CTR,
];

/// A connected SFTP session.
pub struct Sftp {
    session: SftpSession,
    _ssh: Handle<Pinned>,
    /// The folder patterns are relative to, on the server.
    root: String,
    url: String,
    secrets: Vec<String>,
}

/// Accepts exactly the pinned host key, and remembers what the server presented.
struct Pinned {
    expected: String,
    seen: Arc<Mutex<Option<String>>>,
}

impl client::Handler for Pinned {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> std::result::Result<bool, Self::Error> {
        let public = key.public_key();
        let fingerprint = public.fingerprint(HashAlg::Sha256).to_string();
        let matches = fingerprint == self.expected;
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(format!("{fingerprint} ({})", public.algorithm()));
        }
        Ok(matches)
    }
}

impl Sftp {
    /// Connects, checks the host key, logs in and opens the SFTP subsystem.
    pub async fn connect(
        name: &str,
        spec: &SftpConnection,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Sftp> {
        let placeholders =
            crate::source::secret::Placeholders::read(spec.secret.as_deref(), name, env).await?;
        let lookup = |key: &str| placeholders.get(key);
        let mut secrets = Vec::new();
        // Only the password's and the private key's values are secrets: the host and
        // the user are shown in messages.
        let mut fill = |template: &str, secret: bool| -> Result<String> {
            let (value, found) = if secret {
                crate::source::resolve_secret(template, name, &lookup)?
            } else {
                crate::source::resolve_url(template, name, &lookup)?
            };
            secrets.extend(found);
            Ok(value)
        };
        let host = fill(&spec.host, false)?;
        let user = fill(&spec.user, false)?;
        let password = spec
            .password
            .as_deref()
            .map(|p| fill(p, true))
            .transpose()?;
        let key = spec
            .private_key
            .as_deref()
            .map(|k| fill(k, true))
            .transpose()?;
        secrets.retain(|s| s.len() >= 3);
        let url = format!("sftp://{user}@{host}:{}", spec.port);
        let at = |e: Error| redact(e.context(format!("connection `{name}` ({url})")), &secrets);

        let config = Arc::new(client::Config {
            preferred: russh::Preferred {
                cipher: std::borrow::Cow::Borrowed(CIPHERS),
                ..Default::default()
            },
            inactivity_timeout: None,
            keepalive_interval: Some(Duration::from_secs(15)),
            keepalive_max: 3,
            nodelay: true,
            window_size: 16 << 20,
            maximum_packet_size: 65535,
            ..Default::default()
        });
        let seen = Arc::new(Mutex::new(None));
        let handler = Pinned {
            expected: spec.host_key.clone(),
            seen: seen.clone(),
        };
        let connecting = client::connect(config, (host.as_str(), spec.port), handler);
        let mut ssh = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Err(_) => {
                return Err(at(Error::external(format!(
                    "no SSH handshake within {}s (is the server reachable from here, and the port right?)",
                    CONNECT_TIMEOUT.as_secs()
                ))));
            }
            Ok(Err(russh::Error::UnknownKey)) => {
                let presented = seen
                    .lock()
                    .ok()
                    .and_then(|s| s.clone())
                    .unwrap_or_else(|| "a key".into());
                return Err(at(Error::user(format!(
                    "the server presented host key {presented}, not the pinned {}; refusing to log in (if the server's key was replaced on purpose, pin the new one in `host_key`)",
                    spec.host_key
                ))));
            }
            Ok(Err(e)) => return Err(at(ssh_error(e, "connecting"))),
            Ok(Ok(ssh)) => ssh,
        };
        let auth = match (&password, &key) {
            (_, Some(pem)) => {
                let key = decode_secret_key(pem, None).map_err(|e| {
                    at(Error::user(format!(
                        "the private key is not an unencrypted OpenSSH or PEM key: {e}"
                    )))
                })?;
                let hash = ssh
                    .best_supported_rsa_hash()
                    .await
                    .map_err(|e| at(ssh_error(e, "logging in")))?
                    .flatten();
                ssh.authenticate_publickey(&user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
                    .await
            }
            (Some(password), None) => ssh.authenticate_password(&user, password).await,
            (None, None) => {
                return Err(at(Error::internal(
                    "an SFTP connection without credentials",
                )));
            }
        }
        .map_err(|e| at(ssh_error(e, "logging in")))?;
        if let AuthResult::Failure { .. } = auth {
            return Err(at(Error::user(format!(
                "the server refused user `{user}`'s {} (check the connection's secret)",
                if key.is_some() { "key" } else { "password" }
            ))));
        }
        let channel = ssh
            .channel_open_session()
            .await
            .map_err(|e| at(ssh_error(e, "opening a session")))?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|e| at(ssh_error(e, "starting SFTP")))?;
        let config = russh_sftp::client::Config {
            max_concurrent_reads: 64,
            request_timeout_secs: 60,
            ..Default::default()
        };
        let session = SftpSession::new_with_config(channel.into_stream(), config)
            .await
            .map_err(|e| {
                at(Error::external(format!(
                    "the server's SFTP subsystem did not start: {e}"
                )))
            })?;
        let root = spec.path.clone();
        Ok(Sftp {
            session,
            _ssh: ssh,
            root,
            url,
            secrets,
        })
    }

    fn remote(&self, path: &str) -> String {
        join(&self.root, path)
    }

    fn fail(&self, e: russh_sftp::client::error::Error, doing: &str, path: &str) -> Error {
        let what = format!("{doing} {}", self.describe(path));
        let err = match &e {
            russh_sftp::client::error::Error::Status(s)
                if matches!(
                    s.status_code,
                    StatusCode::NoSuchFile | StatusCode::PermissionDenied
                ) =>
            {
                // OpenSSH's message is the status's own name: said once.
                let code = s.status_code.to_string();
                let said = s.error_message.trim();
                if said.is_empty() || said.eq_ignore_ascii_case(&code) {
                    Error::user(format!("{what}: {code}"))
                } else {
                    Error::user(format!("{what}: {said} ({code})"))
                }
            }
            _ => Error::external(format!("{what}: {e}")),
        };
        redact(err, &self.secrets)
    }
}

fn ssh_error(e: russh::Error, doing: &str) -> Error {
    Error::external(format!("{doing}: {e}"))
}

fn is_missing(e: &russh_sftp::client::error::Error) -> bool {
    matches!(e, russh_sftp::client::error::Error::Status(s) if s.status_code == StatusCode::NoSuchFile)
}

#[async_trait]
impl Store for Sftp {
    async fn list(&self, folder: &str) -> Result<Listing> {
        let dir = self.remote(folder);
        let dir = if dir.is_empty() { ".".to_string() } else { dir };
        let entries = match self.session.read_dir(dir).await {
            Ok(entries) => entries,
            // Not made yet (next month's folder): nothing new.
            Err(e) if is_missing(&e) => return Ok(Listing::default()),
            Err(e) => return Err(self.fail(e, "listing", folder)),
        };
        let mut listing = Listing::default();
        for e in entries {
            let kind = e.file_type();
            if kind.is_dir() {
                listing.folders.push(join(folder, &e.file_name()));
            } else if kind.is_file() {
                let meta = e.metadata();
                listing.files.push(Entry {
                    path: join(folder, &e.file_name()),
                    size: meta.size.unwrap_or(0),
                    modified: i64::from(meta.mtime.unwrap_or(0)),
                });
            }
        }
        Ok(listing)
    }

    async fn fetch(&self, path: &str, size: u64) -> Result<Local> {
        let what = self.describe(path);
        let remote = self
            .session
            .open(self.remote(path))
            .await
            .map_err(|e| self.fail(e, "opening", path))?;
        let (spooled, mut file) = Spooled::create().await?;
        let mut remote = tokio::io::BufReader::with_capacity(1 << 20, remote);
        let written = tokio::io::copy_buf(&mut remote, &mut file)
            .await
            .map_err(|e| {
                redact(
                    Error::external(format!("fetching {what}: {e}")),
                    &self.secrets,
                )
            })?;
        file.flush()
            .await
            .map_err(|e| Error::external(format!("writing the copy of {what}: {e}")))?;
        let _ = remote.into_inner().shutdown().await;
        changed_while_fetched(&what, size, written)?;
        Ok(Local::Fetched(spooled))
    }

    async fn sha256(&self, path: &str) -> Result<(String, u64)> {
        let mut remote = self
            .session
            .open(self.remote(path))
            .await
            .map_err(|e| self.fail(e, "opening", path))?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1 << 20];
        let mut bytes = 0u64;
        loop {
            let n = remote.read(&mut buffer).await.map_err(|e| {
                redact(
                    Error::external(format!("reading {}: {e}", self.describe(path))),
                    &self.secrets,
                )
            })?;
            if n == 0 {
                break;
            }
            bytes += n as u64;
            hasher.update(&buffer[..n]);
        }
        let _ = remote.shutdown().await;
        Ok((super::read::hex(&hasher.finalize()), bytes))
    }

    async fn delete(&self, path: &str) -> Result<()> {
        match self.session.remove_file(self.remote(path)).await {
            Ok(()) => Ok(()),
            Err(e) if is_missing(&e) => Ok(()),
            Err(e) => Err(self.fail(e, "deleting", path)),
        }
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        if let Some((folder, _)) = to.rsplit_once('/') {
            let dir = self.remote(folder);
            if !self.session.try_exists(dir.clone()).await.unwrap_or(false) {
                // Made one level at a time; a level another run made meanwhile is fine.
                let mut made = String::new();
                for part in dir.split('/') {
                    made = if made.is_empty() && !dir.starts_with('/') {
                        part.to_string()
                    } else {
                        format!("{made}/{part}")
                    };
                    if !part.is_empty()
                        && !self.session.try_exists(made.clone()).await.unwrap_or(false)
                    {
                        let _ = self.session.create_dir(made.clone()).await;
                    }
                }
            }
        }
        // SFTP's rename refuses to replace: a copy an interrupted move left is removed.
        let target = self.remote(to);
        if self
            .session
            .try_exists(target.clone())
            .await
            .unwrap_or(false)
        {
            self.delete(to).await?;
        }
        self.session
            .rename(self.remote(from), target)
            .await
            .map_err(|e| self.fail(e, &format!("moving to {to}:"), from))
    }

    fn describe(&self, path: &str) -> String {
        // An absolute root (`/srv/bank`) follows the host's `/` once, not twice.
        format!("{}/{}", self.url, self.remote(path).trim_start_matches('/'))
    }
}
