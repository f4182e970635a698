//! Many rows read as one, on SQLite. sqlx runs each SQLite connection on a
//! thread of its own and hands every row of an answer to the caller's task
//! separately, each value copied out of SQLite first; for a list page of 50
//! requests and their credentials that hand-off was most of the page's time
//! (README, "The API's figures"). SQLite builds the page as one JSON array
//! instead (`json_group_array`, in C), which crosses once and is read here
//! into the same row structs, field by field in column order.
//!
//! PostgreSQL's rows come over its socket in one stream and are read as
//! they are.

use crate::{Bind, Error, Result};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::de::{DeserializeOwned, Deserializer, Error as _};
use serde::Deserialize;
use sqlx::SqliteConnection;

/// The rows `select` (a query whose columns are `columns`, comma-separated
/// names) returns, in the order `order_by` gives them, read as one value.
pub(crate) async fn fetch_all<T: DeserializeOwned>(
    conn: &mut SqliteConnection,
    columns: &str,
    select: &str,
    order_by: &str,
    binds: &[Bind],
) -> Result<Vec<T>> {
    let sql = sql(columns, select, order_by);
    let json: String = bind_all!(sqlx::query_scalar(&sql), binds)
        .fetch_one(&mut *conn)
        .await?;
    serde_json::from_str(&json).map_err(|e| Error::Corrupt(format!("rows of {select:?}: {e}")))
}

/// The query [`fetch_all`] runs for `select`.
pub(crate) fn sql(columns: &str, select: &str, order_by: &str) -> String {
    // The aggregate's own ORDER BY (SQLite 3.44 and later) keeps the order:
    // a subquery's is not promised to survive the aggregate.
    format!("SELECT json_group_array(json_array({columns}) ORDER BY {order_by}) FROM ({select})")
}

/// A time as sqlx writes it in SQLite (RFC 3339), or as SQLite's own
/// functions do (`YYYY-MM-DD HH:MM:SS`, UTC): what sqlx itself would read.
pub(crate) fn time<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<DateTime<Utc>, D::Error> {
    let text = String::deserialize(d)?;
    parse_time(&text).ok_or_else(|| D::Error::custom(format!("time {text:?}")))
}

/// [`time`], or nothing.
pub(crate) fn optional_time<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<DateTime<Utc>>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(text) => parse_time(&text)
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("time {text:?}"))),
    }
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.with_timezone(&Utc));
    }
    ["%F %T%.f", "%FT%T%.f"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .map(|naive| naive.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_as_sqlx_writes_them_and_as_sqlite_does() {
        let written = "2026-12-02T01:02:03.123456+00:00";
        assert_eq!(
            parse_time(written),
            Some(
                DateTime::parse_from_rfc3339(written)
                    .unwrap()
                    .with_timezone(&Utc)
            )
        );
        assert_eq!(
            parse_time("2026-12-02 01:02:03").map(|t| t.to_rfc3339()),
            Some("2026-12-02T01:02:03+00:00".to_string())
        );
        assert_eq!(parse_time("yesterday"), None);
    }
}
