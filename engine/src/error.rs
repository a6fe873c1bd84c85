//! Errors, classified where they are born.
//!
//! Every error says who is at fault and whether a retry can help. The class decides the
//! process exit code (see `main.rs`) and the error name a task reports to the Step
//! Functions state machine (`state_error`), on which its retries match: only `External`
//! errors (and interrupted runs) are retried.

use std::fmt;

/// Who is at fault, and so whether running the same job again can succeed.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Another run of the same job holds its lease. Not an error of the job; retrying
    /// later (not now) is right.
    Busy,
    /// The job row, the SQL, the schema or the data is wrong: the same run fails again
    /// until a person changes something. Not retryable.
    User,
    /// The network, a database, the object store or a throttle failed: retryable.
    External,
    /// A bug in sluice. Not retryable; report it.
    Internal,
    /// Stopped by SIGINT or SIGTERM before it committed: nothing of the run stands, and
    /// running it again loads its window (see `interrupt.rs`).
    Interrupted,
}

impl ErrorClass {
    /// The process exit code for this class. Documented in docs/reference/exit-codes.md
    /// (generated from this file); the state machine matches on these numbers.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorClass::User => 2,
            ErrorClass::Busy => 3,
            ErrorClass::External => 75,     // EX_TEMPFAIL
            ErrorClass::Internal => 70,     // EX_SOFTWARE
            ErrorClass::Interrupted => 130, // 128 + SIGINT, as shells report Ctrl-C
        }
    }

    pub fn retryable(self) -> bool {
        matches!(self, ErrorClass::External)
    }

    /// How bad an outcome is, when several runs' are one exit code: an interruption (the
    /// runs were cut short), a bug, a user error (retrying cannot help it), a transient
    /// failure, a busy lease.
    pub fn severity(self) -> u8 {
        match self {
            ErrorClass::Interrupted => 4,
            ErrorClass::Internal => 3,
            ErrorClass::User => 2,
            ErrorClass::External => 1,
            ErrorClass::Busy => 0,
        }
    }

    /// The error name a task reports to Step Functions for this class (`SendTaskFailure`);
    /// the state machine's retries and catches match on these names. An interrupted run
    /// left nothing committed and is retried like a transient failure.
    pub fn state_error(self) -> &'static str {
        match self {
            ErrorClass::User => "Sluice.User",
            ErrorClass::Busy => "Sluice.Busy",
            ErrorClass::External | ErrorClass::Interrupted => "Sluice.Retryable",
            ErrorClass::Internal => "Sluice.Internal",
        }
    }

    /// The class behind an error name an execution shows: ours, or the state machine's
    /// own (a task that could not start, stopped heartbeating or timed out is retryable).
    pub fn from_state_error(name: &str) -> Self {
        match name {
            "Sluice.User" => ErrorClass::User,
            "Sluice.Busy" => ErrorClass::Busy,
            "Sluice.Internal" => ErrorClass::Internal,
            _ => ErrorClass::External,
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorClass::Busy => "busy",
            ErrorClass::User => "user",
            ErrorClass::External => "external",
            ErrorClass::Internal => "internal",
            ErrorClass::Interrupted => "interrupted",
        })
    }
}

/// An error with its class and a message that says what to do next.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub class: ErrorClass,
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn user(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::User, message)
    }
    pub fn external(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::External, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Internal, message)
    }
    pub fn busy(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Busy, message)
    }

    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
            source: None,
        }
    }

    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Prefixes the message with where the error happened (`job orders: …`).
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    /// The message followed by its chain of causes, for the final log line.
    pub fn report(&self) -> String {
        let mut out = self.message.clone();
        let mut cause = self.source.as_deref().map(|e| e as &dyn std::error::Error);
        while let Some(e) = cause {
            let text = e.to_string();
            if !out.contains(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            cause = e.source();
        }
        out
    }
}

/// Classifies a database driver error: connection-level failures are retryable, while a
/// failing statement (missing table, bad SQL, a value that does not fit) is the user's.
pub fn classify_sqlx(err: sqlx::Error, doing: &str) -> Error {
    use sqlx::Error as E;
    let class = match &err {
        E::Io(_) | E::Tls(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed => {
            ErrorClass::External
        }
        E::Protocol(_) => ErrorClass::External,
        E::Database(db) => database_error_class(db.code().as_deref()),
        E::Configuration(_) => ErrorClass::User,
        E::ColumnNotFound(_) | E::ColumnIndexOutOfBounds { .. } => ErrorClass::Internal,
        E::ColumnDecode { .. } | E::Decode(_) | E::TypeNotFound { .. } => ErrorClass::User,
        _ => ErrorClass::Internal,
    };
    Error::new(class, format!("{doing}: {err}")).with_source(err)
}

/// SQLSTATE classes 08 (connection), 40 (rollback/serialization), 53 (resources), 57
/// (operator intervention: shutdown, cancel) and 58 (system) are transient.
/// MySQL's numeric codes: 1040 too many connections, 1205 lock wait, 1213 deadlock,
/// 2002/2003/2006/2013 connection lost.
fn database_error_class(code: Option<&str>) -> ErrorClass {
    let Some(code) = code else {
        return ErrorClass::User;
    };
    const TRANSIENT_SQLSTATE: [&str; 5] = ["08", "40", "53", "57", "58"];
    const TRANSIENT_MYSQL: [&str; 7] = ["1040", "1205", "1213", "2002", "2003", "2006", "2013"];
    if TRANSIENT_MYSQL.contains(&code)
        || (code.len() == 5 && TRANSIENT_SQLSTATE.contains(&&code[..2]))
    {
        ErrorClass::External
    } else {
        ErrorClass::User
    }
}

/// Classifies an object store error: missing credentials or a bad bucket name are the
/// user's; everything that reaches the network is retryable.
pub fn classify_object_store(err: object_store::Error, doing: &str) -> Error {
    use object_store::Error as E;
    let class = match &err {
        E::NotFound { .. } | E::InvalidPath { .. } | E::NotSupported { .. } => ErrorClass::User,
        E::UnknownConfigurationKey { .. } | E::Unauthenticated { .. } => ErrorClass::User,
        E::PermissionDenied { .. } => ErrorClass::User,
        _ => ErrorClass::External,
    };
    Error::new(class, format!("{doing}: {err}")).with_source(err)
}

/// Classifies a DataFusion error: planning and SQL errors are the user's (the job's
/// `transform`); resource exhaustion and I/O are retryable; an error that one of our own
/// streams raised inside the plan keeps its class and message.
pub fn classify_datafusion(err: datafusion::error::DataFusionError, doing: &str) -> Error {
    use datafusion::error::DataFusionError as E;
    let root = err.find_root();
    if let E::External(inner) = root
        && let Some(ours) = inner.downcast_ref::<Error>()
    {
        return Error::new(ours.class, ours.message.clone());
    }
    let class = match root {
        E::SQL(..) | E::Plan(_) | E::SchemaError(..) | E::Configuration(_) => ErrorClass::User,
        E::ArrowError(..) | E::Execution(_) => ErrorClass::User,
        E::ResourcesExhausted(_) => {
            return Error::user(format!(
                "{doing}: the transform needs more memory than the run's budget allows ({root}); raise --memory-limit or simplify the transform"
            ));
        }
        E::IoError(_) | E::ObjectStore(_) | E::External(_) => ErrorClass::External,
        _ => ErrorClass::Internal,
    };
    Error::new(class, format!("{doing}: {root}"))
}

impl From<Error> for datafusion::error::DataFusionError {
    fn from(err: Error) -> Self {
        datafusion::error::DataFusionError::External(Box::new(err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct_and_only_external_retries() {
        let all = [
            ErrorClass::Busy,
            ErrorClass::User,
            ErrorClass::External,
            ErrorClass::Internal,
            ErrorClass::Interrupted,
        ];
        let mut codes: Vec<i32> = all.iter().map(|c| c.exit_code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
        assert!(codes.iter().all(|c| *c != 0 && *c != 1));
        assert_eq!(
            all.iter().filter(|c| c.retryable()).collect::<Vec<_>>(),
            vec![&ErrorClass::External]
        );
    }

    #[test]
    fn state_error_names_round_trip() {
        for class in [
            ErrorClass::Busy,
            ErrorClass::User,
            ErrorClass::External,
            ErrorClass::Internal,
        ] {
            assert_eq!(ErrorClass::from_state_error(class.state_error()), class);
        }
        assert_eq!(
            ErrorClass::from_state_error(ErrorClass::Interrupted.state_error()),
            ErrorClass::External
        );
        assert_eq!(
            ErrorClass::from_state_error("States.HeartbeatTimeout"),
            ErrorClass::External
        );
    }

    #[test]
    fn sqlstate_classes() {
        assert_eq!(database_error_class(Some("08006")), ErrorClass::External);
        assert_eq!(database_error_class(Some("40001")), ErrorClass::External);
        assert_eq!(database_error_class(Some("42P01")), ErrorClass::User);
        assert_eq!(database_error_class(Some("2013")), ErrorClass::External);
        assert_eq!(database_error_class(Some("1146")), ErrorClass::User);
    }

    #[test]
    fn our_error_survives_a_datafusion_round_trip() {
        let ours = Error::external("database went away");
        let df: datafusion::error::DataFusionError = ours.into();
        let back = classify_datafusion(df, "transform");
        assert_eq!(back.class, ErrorClass::External);
        assert_eq!(back.message, "database went away");
    }
}
