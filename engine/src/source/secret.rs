//! Connections whose credentials live in AWS Secrets Manager, in the JSON shape RDS and
//! the console's "credentials for a database" secrets use:
//! `{"engine", "host", "port", "username", "password", "dbname"}`.

use serde::Deserialize;

use super::url_escape;
use crate::error::{Error, Result};
use crate::job::ConnectionKind;

#[derive(Deserialize)]
struct RdsSecret {
    #[serde(default)]
    engine: Option<String>,
    host: String,
    #[serde(default)]
    port: Option<Port>,
    username: String,
    password: String,
    #[serde(default)]
    dbname: Option<String>,
}

/// RDS writes the port as a number; people often write it as a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum Port {
    Number(u16),
    Text(String),
}

/// Reads the secret and builds the connection URL. Returns the URL and the values to
/// scrub from any message (the password, raw and escaped).
pub async fn connection_url(
    secret_id: &str,
    kind: ConnectionKind,
) -> Result<(String, Vec<String>)> {
    let text = crate::aws::secret_string(secret_id).await?;
    url_from_secret(secret_id, &text, kind)
}

/// The values of a connection's `${KEY}` placeholders: its secret's keys first (an API's
/// or an SFTP server's), then the environment.
pub struct Placeholders<'a> {
    from_secret: std::collections::BTreeMap<String, String>,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Placeholders<'a> {
    /// Reads the connection's secret, if it names one.
    pub async fn read(
        secret: Option<&str>,
        connection: &str,
        env: &'a dyn Fn(&str) -> Option<String>,
    ) -> Result<Placeholders<'a>> {
        let from_secret = match secret {
            Some(id) => placeholder_values(id)
                .await
                .map_err(|e| e.context(format!("connection `{connection}`")))?,
            None => Default::default(),
        };
        Ok(Placeholders { from_secret, env })
    }

    pub fn get(&self, key: &str) -> Option<String> {
        self.from_secret
            .get(key)
            .cloned()
            .or_else(|| (self.env)(key))
    }
}

/// Reads an API connection's secret: a JSON object whose keys fill the connection's
/// `${KEY}` placeholders (strings as they are, numbers and booleans as their text).
pub async fn placeholder_values(
    secret_id: &str,
) -> Result<std::collections::BTreeMap<String, String>> {
    let text = crate::aws::secret_string(secret_id).await?;
    values_from_secret(secret_id, &text)
}

fn values_from_secret(
    secret_id: &str,
    text: &str,
) -> Result<std::collections::BTreeMap<String, String>> {
    let refuse = || {
        Error::user(format!(
            "secret `{secret_id}` is not a JSON object of placeholder values, such as {{\"TAGS_CLIENT_SECRET\": \"…\"}}"
        ))
    };
    let value: serde_json::Value = serde_json::from_str(text).map_err(|_| refuse())?;
    let object = value.as_object().ok_or_else(refuse)?;
    object
        .iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k.clone(), s.clone())),
            serde_json::Value::Number(_) | serde_json::Value::Bool(_) => {
                Ok((k.clone(), v.to_string()))
            }
            _ => Err(Error::user(format!(
                "secret `{secret_id}`: key `{k}` holds an object, array or null; a placeholder value is text"
            ))),
        })
        .collect()
}

fn url_from_secret(
    secret_id: &str,
    text: &str,
    kind: ConnectionKind,
) -> Result<(String, Vec<String>)> {
    // The parse error could quote the text, and so the password: it is not passed on.
    let secret: RdsSecret = serde_json::from_str(text).map_err(|_| {
        Error::user(format!(
            "secret `{secret_id}` is not a database secret: it must be JSON with \
             `host`, `username`, `password` and optionally `engine`, `port`, `dbname`"
        ))
    })?;
    let (scheme, default_port, engines): (&str, u16, &[&str]) = match kind {
        ConnectionKind::Postgres => ("postgres", 5432, &["postgres", "aurora-postgresql"]),
        ConnectionKind::Mysql => (
            "mysql",
            3306,
            &["mysql", "mariadb", "aurora-mysql", "aurora"],
        ),
        ConnectionKind::Sqlite => {
            return Err(Error::user(
                "a sqlite connection is a file and cannot come from a secret",
            ));
        }
        _ => {
            return Err(Error::internal(
                "a feed's connection has no database secret",
            ));
        }
    };
    if let Some(engine) = &secret.engine
        && !engines.contains(&engine.as_str())
    {
        return Err(Error::user(format!(
            "secret `{secret_id}` is for engine `{engine}`, but the connection's kind is `{}` (engines it accepts: {})",
            kind.name(),
            engines.join(", ")
        )));
    }
    let port = match &secret.port {
        None => default_port,
        Some(Port::Number(p)) => *p,
        Some(Port::Text(p)) => p.trim().parse().map_err(|_| {
            Error::user(format!(
                "secret `{secret_id}`: port {p:?} is not a port number"
            ))
        })?,
    };
    let url = format!(
        "{scheme}://{}:{}@{}:{port}/{}",
        url_escape(&secret.username),
        url_escape(&secret.password),
        secret.host,
        secret.dbname.as_deref().map(url_escape).unwrap_or_default()
    );
    Ok((url, vec![secret.password]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rds_secrets_become_urls() -> Result<()> {
        let (url, secrets) = url_from_secret(
            "s",
            r#"{"engine":"postgres","host":"10.0.0.5","port":5433,"username":"etl","password":"p@ss/w","dbname":"sales"}"#,
            ConnectionKind::Postgres,
        )?;
        assert_eq!(url, "postgres://etl:p%40ss%2Fw@10.0.0.5:5433/sales");
        assert_eq!(secrets, ["p@ss/w"]);
        let (url, _) = url_from_secret(
            "s",
            r#"{"host":"db","port":"3307","username":"u","password":"p"}"#,
            ConnectionKind::Mysql,
        )?;
        assert_eq!(url, "mysql://u:p@db:3307/");
        Ok(())
    }

    #[test]
    fn wrong_secrets_say_what_is_wrong_without_the_password() {
        let engine = url_from_secret(
            "s",
            r#"{"engine":"mysql","host":"h","username":"u","password":"hunter2"}"#,
            ConnectionKind::Postgres,
        );
        assert!(
            engine.is_err_and(
                |e| e.message.contains("engine `mysql`") && !e.message.contains("hunter2")
            )
        );
        let shape = url_from_secret(
            "s",
            r#"{"host":"h","password":"hunter2"}"#,
            ConnectionKind::Postgres,
        );
        assert!(
            shape
                .is_err_and(|e| e.message.contains("`username`") && !e.message.contains("hunter2"))
        );
    }
}
