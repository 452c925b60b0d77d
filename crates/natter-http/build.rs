//! Rebuilds when the embedded web client or JavaScript SDK changes:
//! `include_dir!` alone does not tell Cargo which files it read.
fn main() {
    println!("cargo:rerun-if-changed=../../web");
    println!("cargo:rerun-if-changed=../../sdk/js/natter.js");
    println!("cargo:rerun-if-changed=../../sdk/js/natter.d.ts");
}
