//! `sqlx::migrate!` embeds `migrations/` but cannot tell cargo about a file added there.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
