//! Building blocks for batch handlers' multi-row statements, on SQLite and PostgreSQL alike.

use sqlx::AnyConnection;

/// The `VALUES` list of a multi-row statement for the database behind `conn`: `rows` tuples of
/// `columns` placeholders. Bind the values row by row, column by column; the statement should
/// have no other parameters.
///
/// On PostgreSQL the placeholders are numbered (`$1`, `$2`, …). On SQLite they are anonymous
/// (`?`): SQLite looks a numbered parameter up by name with a linear scan, so binding `n`
/// numbered parameters costs `n²` — a few milliseconds for a batch of a thousand values — while
/// anonymous ones bind in order.
///
/// Keep `rows × columns` under SQLite's 32,766 bind parameters: split longer batches with
/// [`slice::chunks`] of [`MAX_ROWS`] or fewer.
pub fn values(conn: &AnyConnection, rows: usize, columns: usize) -> String {
    if conn.backend_name() == "SQLite" {
        anonymous(rows, columns)
    } else {
        numbered(rows, columns)
    }
}

/// `rows` tuples of `columns` anonymous placeholders: `(?,?),(?,?)`.
pub(crate) fn anonymous(rows: usize, columns: usize) -> String {
    let mut tuple = String::with_capacity(columns * 2 + 1);
    tuple.push('(');
    for column in 0..columns {
        if column > 0 {
            tuple.push(',');
        }
        tuple.push('?');
    }
    tuple.push(')');
    let mut sql = String::with_capacity(rows * (tuple.len() + 1));
    for row in 0..rows {
        if row > 0 {
            sql.push(',');
        }
        sql.push_str(&tuple);
    }
    sql
}

/// `rows` tuples of `columns` placeholders numbered from `$1` in row order.
pub(crate) fn numbered(rows: usize, columns: usize) -> String {
    use std::fmt::Write;
    let mut sql = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        if row > 0 {
            sql.push(',');
        }
        sql.push('(');
        for column in 0..columns {
            if column > 0 {
                sql.push(',');
            }
            let _ = write!(sql, "${}", row * columns + column + 1);
        }
        sql.push(')');
    }
    sql
}

/// Rows per statement that stay within both databases' parameter limits for up to 32 columns.
pub const MAX_ROWS: usize = 1_000;

// SQLite's limit is the lower of the two.
const _: () = assert!(MAX_ROWS * 32 < 32_766);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_row_order_or_anonymous() {
        assert_eq!(numbered(1, 1), "($1)");
        assert_eq!(numbered(3, 2), "($1,$2),($3,$4),($5,$6)");
        assert_eq!(numbered(0, 2), "");
        assert_eq!(anonymous(2, 3), "(?,?,?),(?,?,?)");
        assert_eq!(anonymous(0, 3), "");
    }

    #[tokio::test]
    async fn the_placeholders_suit_the_connection() {
        sqlx::any::install_default_drivers();
        let mut conn = <AnyConnection as sqlx::Connection>::connect("sqlite::memory:").await.expect("opens");
        assert_eq!(values(&conn, 2, 1), "(?),(?)");
        sqlx::query("CREATE TABLE t (a BIGINT, b TEXT)").execute(&mut conn).await.expect("creates");
        let statement = format!("INSERT INTO t (a, b) VALUES {}", values(&conn, 2, 2));
        sqlx::query(&statement)
            .bind(1_i64)
            .bind("x")
            .bind(2_i64)
            .bind("y")
            .execute(&mut conn)
            .await
            .expect("inserts");
        let row: (i64, String) =
            sqlx::query_as("SELECT a, b FROM t WHERE a = 2").fetch_one(&mut conn).await.expect("reads");
        assert_eq!(row, (2, "y".to_owned()), "bound in row order");
    }
}
