//! The crates of `examples/` as a team gets them: README.md shows their files verbatim, and a
//! copy of each, outside this workspace with nothing but a path dependency on `fanout`, builds
//! and passes its own test against the local stack (`crates/cli/tests/new.rs` proves they are
//! what `fanout new` writes).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{ensure, Context};

const EXAMPLES: [&str; 2] = ["audit", "post-service"];

fn repo() -> PathBuf {
    fanout_testkit::stack::repo_root()
}

/// `(path, text)` of each fenced block README.md announces with `<!-- file: PATH -->` on the line
/// before it.
fn readme_files() -> anyhow::Result<Vec<(String, String)>> {
    let readme = std::fs::read_to_string(repo().join("README.md"))?;
    let mut lines = readme.lines();
    let mut shown = Vec::new();
    while let Some(line) = lines.next() {
        let Some(path) = line.trim().strip_prefix("<!-- file: ").and_then(|rest| rest.strip_suffix(" -->"))
        else {
            continue;
        };
        let fence = lines.next().unwrap_or_default();
        ensure!(fence.starts_with("```"), "README: `<!-- file: {path} -->` is not followed by a code block");
        let mut text = String::new();
        for line in lines.by_ref().take_while(|line| *line != "```") {
            text.push_str(line);
            text.push('\n');
        }
        shown.push((path.to_owned(), text));
    }
    Ok(shown)
}

#[test]
fn readme_shows_the_example_files_as_they_are() -> anyhow::Result<()> {
    let shown = readme_files()?;
    for required in [
        "examples/audit/Cargo.toml",
        "examples/audit/src/lib.rs",
        "examples/audit/audit.toml",
        "examples/post-service/Cargo.toml",
        "examples/post-service/src/main.rs",
        "examples/post-service/post-service.toml",
    ] {
        ensure!(shown.iter().any(|(path, _)| path == required), "README.md does not show {required}");
    }
    for (path, text) in &shown {
        let file =
            std::fs::read_to_string(repo().join(path)).with_context(|| format!("README shows {path}"))?;
        ensure!(&file == text, "README.md's copy of {path} differs from the file: paste the file again");
    }
    Ok(())
}

/// Copies `from` into `to`, leaving out build output.
fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            if entry.file_name() != "target" {
                copy_dir(&entry.path(), &target)?;
            }
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[test]
fn each_example_builds_and_passes_its_test_as_a_crate_of_its_own_outside_the_workspace() -> anyhow::Result<()>
{
    let scratch = tempfile::tempdir()?;
    let fanout = repo().join("crates/fanout").canonicalize()?;
    // The workspace's build directory: what the copies share with it is not compiled twice.
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo().join("target"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    for name in EXAMPLES {
        let dir = scratch.path().join(name);
        copy_dir(&repo().join("examples").join(name), &dir)?;
        let manifest = dir.join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest)?;
        ensure!(
            text.contains("path = \"../../crates/fanout\""),
            "examples/{name}/Cargo.toml: no path to fanout"
        );
        std::fs::write(&manifest, text.replace("../../crates/fanout", &fanout.display().to_string()))?;
        // The workspace's versions of everything, so the copy builds offline.
        std::fs::copy(repo().join("Cargo.lock"), dir.join("Cargo.lock"))?;
        let output = Command::new(&cargo)
            .args(["test", "--offline", "--quiet"])
            .current_dir(&dir)
            .env("CARGO_TARGET_DIR", &target)
            .output()
            .with_context(|| format!("running {cargo}"))?;
        ensure!(
            output.status.success(),
            "a copy of examples/{name} outside the workspace does not build or pass its test:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
