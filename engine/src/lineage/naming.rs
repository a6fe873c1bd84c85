//! Dataset names as OpenLineage's naming conventions give them
//! (<https://openlineage.io/docs/spec/naming>): a namespace that says where the data lives
//! (`postgres://host:port`, `s3://bucket`, `sftp://host:port`) and a name inside it
//! (`db.schema.table`, a key prefix, a path). A job's source and its lake table are named
//! here, from the compiled job alone: no secret is read, and no user-info (a password in a
//! connection URL) ever reaches a name.

use crate::job::files::FileStore;
use crate::job::http::Call;
use crate::job::{Address, From, Job, Relation};
use crate::spec::ConnectionKind;

/// A dataset as OpenLineage names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dataset {
    pub namespace: String,
    pub name: String,
}

impl Dataset {
    fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// `namespace/name`, for people (the console's lineage lists).
    pub fn label(&self) -> String {
        format!("{}/{}", self.namespace.trim_end_matches('/'), self.name)
    }
}

/// The dataset a job reads.
pub fn source(job: &Job) -> Dataset {
    let kind = job.connection.kind;
    match (&job.from, &job.connection.address) {
        (From::Relation(relation), Address::Url(url)) => database(kind, url, relation),
        (From::Relation(relation), _) => Dataset::new(
            // A Secrets Manager connection: its host is in the secret, which lineage does
            // not read; the connection's name stands for it.
            format!("{}://{}", kind.name(), job.connection.name),
            relation_name(relation, None),
        ),
        (From::Queue(_), Address::Url(queue_url)) => queue(queue_url),
        (From::Http(feed), Address::Http(api)) => {
            let path = match &feed.call {
                Call::Rest(request) => request.path.clone(),
                Call::Soap(soap) => soap.path.clone().unwrap_or_default(),
            };
            let (namespace, base) = split_url(&api.base_url);
            Dataset::new(namespace, join_path(&base, &path))
        }
        (From::Files(feed), Address::Files(store)) => {
            let patterns: Vec<&str> = feed.patterns.iter().map(|p| p.glob.text()).collect();
            files(store, &patterns.join(","))
        }
        _ => Dataset::new(
            format!("{}://{}", kind.name(), job.connection.name),
            job.id.clone(),
        ),
    }
}

/// The lake table a job writes, in the lake's namespace (`s3://bucket`, or `file` for a
/// folder).
pub fn lake_table(lake_url: &str, table: &str) -> Dataset {
    if let Some(rest) = lake_url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_matches('/');
        let name = if prefix.is_empty() {
            table.to_string()
        } else {
            format!("{prefix}/{table}")
        };
        return Dataset::new(format!("s3://{bucket}"), name);
    }
    let path = lake_url.strip_prefix("file://").unwrap_or(lake_url);
    Dataset::new("file", format!("{}/{table}", path.trim_end_matches('/')))
}

/// A table or query of a database: `postgres://host:port` + `db.schema.table`,
/// `mysql://host:port` + `db.table`, `sqlite://path` + `table`.
fn database(kind: ConnectionKind, url: &str, relation: &Relation) -> Dataset {
    let url = without_userinfo(url);
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = path.split('?').next().unwrap_or("");
    match kind {
        ConnectionKind::Sqlite => {
            // `sqlite:data/x.db` or `sqlite:///abs/x.db`: the file is the namespace.
            let file = url
                .trim_start_matches("sqlite:")
                .trim_start_matches("//")
                .split('?')
                .next()
                .unwrap_or("")
                .to_string();
            Dataset::new(format!("sqlite://{file}"), relation_name(relation, None))
        }
        ConnectionKind::Mysql => {
            let port = default_port(authority, 3306);
            Dataset::new(
                format!("mysql://{port}"),
                relation_name(relation, Some(path).filter(|p| !p.is_empty())),
            )
        }
        _ => {
            let port = default_port(authority, 5432);
            let name = match relation {
                Relation::Table { schema, name } => {
                    format!("{path}.{}.{name}", schema.as_deref().unwrap_or("public"))
                }
                Relation::Query(_) => format!("{path}.query"),
            };
            Dataset::new(format!("postgres://{port}"), name)
        }
    }
}

/// `schema.table` (or `db.table`), or `query` for a SELECT.
fn relation_name(relation: &Relation, database: Option<&str>) -> String {
    match relation {
        Relation::Table { schema, name } => match (schema, database) {
            (Some(schema), _) => format!("{schema}.{name}"),
            (None, Some(db)) => format!("{db}.{name}"),
            (None, None) => name.clone(),
        },
        Relation::Query(_) => "query".to_string(),
    }
}

/// `host` with its port, the default one added when the URL names none.
fn default_port(authority: &str, port: u16) -> String {
    if authority.starts_with('[') {
        return if authority.contains("]:") {
            authority.to_string()
        } else {
            format!("{authority}:{port}")
        };
    }
    if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:{port}")
    }
}

/// A queue: `https://sqs.REGION.amazonaws.com/ACCOUNT/QUEUE` as namespace
/// `sqs://sqs.REGION.amazonaws.com/ACCOUNT` and name `QUEUE`.
fn queue(queue_url: &str) -> Dataset {
    let url = without_userinfo(queue_url);
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    match rest.trim_end_matches('/').rsplit_once('/') {
        Some((at, name)) => Dataset::new(format!("sqs://{at}"), name),
        None => Dataset::new("sqs://", rest),
    }
}

/// A file store: `sftp://host:port` + path, `s3://bucket` + prefix, `file` + folder.
fn files(store: &FileStore, patterns: &str) -> Dataset {
    match store {
        FileStore::Sftp(sftp) => Dataset::new(
            format!("sftp://{}:{}", sftp.host, sftp.port),
            join_path(&sftp.path, patterns),
        ),
        FileStore::S3 { bucket, prefix } => {
            Dataset::new(format!("s3://{bucket}"), join_path(prefix, patterns))
        }
        FileStore::Folder(dir) => {
            Dataset::new("file", join_path(&dir.display().to_string(), patterns))
        }
    }
}

/// An API's base URL as `scheme://host:port` and its path.
fn split_url(url: &str) -> (String, String) {
    let url = without_userinfo(url);
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.clone(), String::new());
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let port = match scheme {
        "http" => 80,
        _ => 443,
    };
    (
        format!("{scheme}://{}", default_port(authority, port)),
        format!("/{path}"),
    )
}

fn join_path(base: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    let path = path.trim_start_matches('/');
    match (base.is_empty(), path.is_empty()) {
        (true, _) => format!("/{path}"),
        (false, true) => base.to_string(),
        (false, false) => format!("{base}/{path}"),
    }
}

/// The URL without `user:password@`: lineage events and the console never carry it.
pub fn without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(schema: Option<&str>, name: &str) -> Relation {
        Relation::Table {
            schema: schema.map(str::to_string),
            name: name.to_string(),
        }
    }

    #[test]
    fn databases_are_named_by_host_port_and_path_without_passwords() {
        let pg = database(
            ConnectionKind::Postgres,
            "postgres://etl:${PASSWORD}@10.0.0.5/sales?sslmode=require",
            &table(Some("shop"), "orders"),
        );
        assert_eq!(
            pg,
            Dataset::new("postgres://10.0.0.5:5432", "sales.shop.orders")
        );
        let pg = database(
            ConnectionKind::Postgres,
            "postgres://db.internal:6543/sales",
            &table(None, "orders"),
        );
        assert_eq!(
            pg.label(),
            "postgres://db.internal:6543/sales.public.orders"
        );
        let my = database(
            ConnectionKind::Mysql,
            "mysql://u:secret@db:3307/shop",
            &table(None, "orders"),
        );
        assert_eq!(my, Dataset::new("mysql://db:3307", "shop.orders"));
        assert!(!my.label().contains("secret"));
        let lite = database(
            ConnectionKind::Sqlite,
            "sqlite:data/logistics.db",
            &table(None, "trucks"),
        );
        assert_eq!(lite, Dataset::new("sqlite://data/logistics.db", "trucks"));
    }

    #[test]
    fn queues_files_and_apis_follow_the_conventions() {
        assert_eq!(
            queue("https://sqs.eu-west-1.amazonaws.com/123456789012/gps-positions"),
            Dataset::new(
                "sqs://sqs.eu-west-1.amazonaws.com/123456789012",
                "gps-positions"
            )
        );
        assert_eq!(
            split_url("https://user:pw@api.tags.example/v2"),
            (
                "https://api.tags.example:443".to_string(),
                "/v2".to_string()
            )
        );
        assert_eq!(join_path("/v2", "/tags"), "/v2/tags");
        assert_eq!(join_path("", "incoming/*.json"), "/incoming/*.json");
        assert_eq!(
            without_userinfo("postgres://a:b@c/d?x=@"),
            "postgres://c/d?x=@"
        );
        assert_eq!(default_port("[::1]", 5432), "[::1]:5432");
    }

    #[test]
    fn lake_tables_are_named_in_the_lake_namespace() {
        assert_eq!(
            lake_table("s3://lake-bucket/prod", "orders"),
            Dataset::new("s3://lake-bucket", "prod/orders")
        );
        assert_eq!(
            lake_table("s3://lake-bucket", "orders"),
            Dataset::new("s3://lake-bucket", "orders")
        );
        assert_eq!(
            lake_table("file:///srv/lake", "orders"),
            Dataset::new("file", "/srv/lake/orders")
        );
    }
}
