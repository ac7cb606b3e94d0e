//! `fanout new` writes exactly the crates in `examples/` (whose tests run in the workspace's
//! suite and which `tests/examples.rs` builds outside the workspace), and refuses what it cannot
//! write without writing anything.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every file under `dir`, by path relative to it.
fn files(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).expect("readable dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let text = std::fs::read_to_string(&path).expect("text file");
                out.insert(path.strip_prefix(dir).expect("under dir").to_path_buf(), text);
            }
        }
    }
    out
}

fn fanout_new(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fanout")).arg("new").args(args).output().expect("fanout runs")
}

#[test]
fn the_examples_are_what_fanout_new_writes() {
    let scratch = tempfile::tempdir().expect("tempdir");
    for (kind, name, extra) in [
        ("consumer", "audit", &["--port", "9104", "--block", "104"][..]),
        ("publisher", "post-service", &[][..]),
    ] {
        let dir = scratch.path().join(name);
        let dir_arg = dir.to_str().expect("utf-8 path");
        let mut args = vec![kind, name, "--event", "post.published", "--dir", dir_arg];
        args.extend_from_slice(&["--fanout", "../../crates/fanout"]);
        args.extend_from_slice(extra);
        let output = fanout_new(&args);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let example = repo().join("examples").join(name);
        let (written, kept) = (files(&dir), files(&example));
        assert_eq!(
            written.keys().collect::<Vec<_>>(),
            kept.keys().collect::<Vec<_>>(),
            "examples/{name} has other files than `fanout new {kind}` writes"
        );
        for (path, text) in &written {
            assert_eq!(
                text,
                &kept[path],
                "examples/{name}/{} differs from what `fanout new {kind}` writes: change the template \
                 in crates/cli/templates/{kind} and regenerate",
                path.display()
            );
        }
    }
}

#[test]
fn refused_input_is_named_and_writes_nothing() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let taken = scratch.path().join("taken");
    std::fs::create_dir(&taken).expect("mkdir");
    std::fs::write(taken.join("keep.txt"), "mine").expect("write");
    let taken_arg = taken.to_str().expect("utf-8 path");
    let fresh = scratch.path().join("fresh");
    let fresh_arg = fresh.to_str().expect("utf-8 path");
    for (args, says) in [
        (vec!["consumer", "x", "--event", "post.published", "--dir", taken_arg], "exists and is not empty"),
        (vec!["consumer", "Audit", "--event", "post.published", "--dir", fresh_arg], "\"Audit\""),
        (
            vec!["consumer", "audit", "--event", "post.deleted", "--dir", fresh_arg],
            "known types: post.published",
        ),
        (
            vec!["publisher", "p", "--event", "post.published", "--block", "3", "--dir", fresh_arg],
            "--block 3",
        ),
    ] {
        let output = fanout_new(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    assert_eq!(files(&taken).len(), 1, "the taken directory is untouched");
    assert!(!fresh.exists(), "nothing was written for refused input");
}
