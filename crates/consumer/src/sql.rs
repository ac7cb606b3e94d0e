//! Building blocks for batch handlers' multi-row statements, portable between SQLite and
//! PostgreSQL (`$n` placeholders).

/// The `VALUES` list of a multi-row statement: `rows` tuples of `columns` placeholders, numbered
/// from `$1` in row order. Bind the values row by row, column by column.
///
/// Keep `rows × columns` under SQLite's 32,766 bind parameters: split longer batches with
/// [`slice::chunks`] of [`MAX_ROWS`] or fewer.
///
/// ```
/// assert_eq!(fanout_consumer::sql::values(2, 3), "($1,$2,$3),($4,$5,$6)");
/// ```
pub fn values(rows: usize, columns: usize) -> String {
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
    fn placeholders_are_numbered_in_row_order() {
        assert_eq!(values(1, 1), "($1)");
        assert_eq!(values(3, 2), "($1,$2),($3,$4),($5,$6)");
        assert_eq!(values(0, 2), "");
    }
}
