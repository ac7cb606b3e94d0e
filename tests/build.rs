//! `sqlx::migrate!` embeds `migrations/audit` but cannot tell cargo about a file added there.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
