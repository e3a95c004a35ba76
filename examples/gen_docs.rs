//! Regenerates man/ and completions/ from the CLI definitions:
//! `cargo run --example gen_docs`.

#[path = "../tools/docs.rs"]
mod docs;

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for (rel, bytes) in docs::generated_files() {
        let path = root.join(&rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        println!("wrote {}", rel.display());
    }
}
