//! The "one ledger row per event, one running total per user" effect that several services
//! share, written for a whole batch with two multi-row statements per chunk.

use std::{
    collections::BTreeMap,
    time::{SystemTime, UNIX_EPOCH},
};

use fanout_consumer::{sql, HandlerError};
use sqlx::{AnyConnection, Row};

/// A ledger table keyed by event id and the totals table it feeds.
///
/// The ledger has the columns `(event_id TEXT PRIMARY KEY, user_id, post_id, <amount>, <at>)`;
/// the totals table `(user_id PRIMARY KEY, <total>, [<entries>])`.
#[derive(Debug, Clone, Copy)]
pub struct Ledger {
    /// The ledger table.
    pub table: &'static str,
    /// Its amount column.
    pub amount: &'static str,
    /// Its column for when the row was written (ms since the epoch).
    pub at: &'static str,
    /// The totals table.
    pub totals: &'static str,
    /// The totals table's running total.
    pub total: &'static str,
    /// The totals table's count of ledger rows, if it keeps one.
    pub entries: Option<&'static str>,
}

/// One ledger entry: the event id, the user credited and the post that earned it.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// The event id (the ledger's primary key).
    pub event_id: &'a str,
    /// The user credited.
    pub user_id: i64,
    /// The post that earned it.
    pub post_id: i64,
}

impl Ledger {
    /// Writes `entries` of `amount` each and adds what was new to the users' totals; returns
    /// how many entries were new. An entry whose event id is already in the ledger (a duplicate
    /// older than the runtime's dedupe retention) inserts nothing and adds nothing.
    pub async fn credit(
        &self,
        tx: &mut AnyConnection,
        entries: &[Entry<'_>],
        amount: i64,
    ) -> Result<usize, HandlerError> {
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let mut per_user: BTreeMap<i64, i64> = BTreeMap::new();
        for chunk in entries.chunks(sql::MAX_ROWS) {
            let statement = format!(
                "INSERT INTO {} (event_id, user_id, post_id, {}, {}) VALUES {} \
                 ON CONFLICT (event_id) DO NOTHING RETURNING user_id",
                self.table,
                self.amount,
                self.at,
                sql::values(tx, chunk.len(), 5)
            );
            let mut query = sqlx::query(&statement);
            for entry in chunk {
                query = query
                    .bind(entry.event_id)
                    .bind(entry.user_id)
                    .bind(entry.post_id)
                    .bind(amount)
                    .bind(at_ms);
            }
            for row in query.fetch_all(&mut *tx).await? {
                *per_user.entry(row.try_get::<i64, _>(0)?).or_default() += 1;
            }
        }
        let new: i64 = per_user.values().sum();
        let users: Vec<(i64, i64)> = per_user.into_iter().collect();
        for chunk in users.chunks(sql::MAX_ROWS) {
            let (columns, per_row, entries_update) = match self.entries {
                Some(entries) => (
                    format!("user_id, {}, {entries}", self.total),
                    3,
                    format!(", {entries} = {}.{entries} + excluded.{entries}", self.totals),
                ),
                None => (format!("user_id, {}", self.total), 2, String::new()),
            };
            let statement = format!(
                "INSERT INTO {totals} ({columns}) VALUES {values} ON CONFLICT (user_id) DO UPDATE SET \
                 {total} = {totals}.{total} + excluded.{total}{entries_update}",
                totals = self.totals,
                total = self.total,
                values = sql::values(tx, chunk.len(), per_row),
            );
            let mut query = sqlx::query(&statement);
            for (user_id, count) in chunk {
                query = query.bind(*user_id).bind(amount * count);
                if self.entries.is_some() {
                    query = query.bind(*count);
                }
            }
            query.execute(&mut *tx).await?;
        }
        Ok(usize::try_from(new).unwrap_or(0))
    }
}
