// `fanout::migrations!` embeds migrations/ when the crate compiles, but cargo does not know to
// compile again when a file is added there: this tells it.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
