//! Running instances' heartbeats: the newest key version each one seals under,
//! so that retiring a key version can see an instance still holding an older
//! copy of the key file (values in the database alone cannot show it); and
//! how many instances are live, among which the broker's call limit is shared.

use crate::{now, Db, Result};
use chrono::{DateTime, Utc};

/// What one running instance last said about itself.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct InstanceHeartbeat {
    pub id: String,
    /// The newest key version in its key file: the one it seals under.
    pub key_version: i64,
    /// How often it beats, in milliseconds.
    pub every_ms: i64,
    pub seen_at: DateTime<Utc>,
}

impl InstanceHeartbeat {
    /// Whether the instance beat within three of its intervals before `at`
    /// (an instance that died without deleting its row stops counting).
    pub fn is_live_at(&self, at: DateTime<Utc>) -> bool {
        at - self.seen_at < chrono::Duration::milliseconds(self.every_ms.saturating_mul(3))
    }
}

impl Db {
    /// Records that instance `id` is running and seals under `key_version`,
    /// beating every `every`.
    pub async fn record_heartbeat(
        &mut self,
        id: &str,
        key_version: u32,
        every: std::time::Duration,
    ) -> Result<()> {
        let sql = "INSERT INTO instance_heartbeats (id, key_version, every_ms, seen_at) \
                   VALUES ($1, $2, $3, $4) \
                   ON CONFLICT (id) DO UPDATE SET key_version = excluded.key_version, \
                   every_ms = excluded.every_ms, seen_at = excluded.seen_at";
        let every_ms = i64::try_from(every.as_millis()).unwrap_or(i64::MAX);
        on_conn!(self, c => sqlx::query(sql).bind(id).bind(i64::from(key_version)).bind(every_ms)
            .bind(now()).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Removes the heartbeat of instance `id` (it stops).
    pub async fn delete_heartbeat(&mut self, id: &str) -> Result<()> {
        let sql = "DELETE FROM instance_heartbeats WHERE id = $1";
        on_conn!(self, c => sqlx::query(sql).bind(id).execute(c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Every heartbeat recorded, live or not, oldest key version first.
    pub async fn list_heartbeats(&mut self) -> Result<Vec<InstanceHeartbeat>> {
        let sql = "SELECT id, key_version, every_ms, seen_at FROM instance_heartbeats \
                   ORDER BY key_version, id";
        Ok(on_conn!(self, c => sqlx::query_as::<_, InstanceHeartbeat>(sql).fetch_all(c).await)?)
    }
}
