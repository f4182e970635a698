//! The store's one error type. Callers match on `NotFound` and `Conflict`; the
//! rest are faults of the database or its configuration.

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The row asked for does not exist (or is not visible to the asker).
    #[error("{0} not found")]
    NotFound(String),
    /// A uniqueness rule or a guarded update refused the change.
    #[error("{0}")]
    Conflict(String),
    /// The database URL's scheme is neither sqlite nor postgres.
    #[error(
        "database url scheme {0:?} is not supported; use sqlite://PATH or postgres://USER@HOST/DB"
    )]
    UnsupportedUrl(String),
    /// A SQLite file or its directory does not exist and may not be created.
    #[error("{0} does not exist; check the path (Credence does not create a database at a path it was not told to create)")]
    MissingDatabase(String),
    /// A stored value no longer parses (a bug or a hand-edited row).
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Database(sqlx::Error),
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::RowNotFound => Error::NotFound("row".into()),
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
                Error::Corrupt(error.to_string())
            }
            _ => Error::Database(error),
        }
    }
}

impl Error {
    /// Turns a unique-constraint violation into a `Conflict` with `message`.
    pub(crate) fn unique_as_conflict(
        error: sqlx::Error,
        message: impl FnOnce() -> String,
    ) -> Error {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => Error::Conflict(message()),
            _ => error.into(),
        }
    }
}
