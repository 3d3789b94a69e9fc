//! Helpers shared by the CLI integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use assert_cmd::Command;

/// The `evhub` binary with no `EVHUB_*` configuration inherited from the environment.
pub fn evhub() -> Command {
    let mut cmd = Command::cargo_bin("evhub").expect("evhub binary is built");
    for (name, _) in std::env::vars() {
        if name.starts_with("EVHUB_") && !name.starts_with("EVHUB_TEST_") {
            cmd.env_remove(name);
        }
    }
    cmd.env_remove("RUST_LOG");
    cmd
}

/// Output of a finished command.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(cmd: &mut Command) -> Run {
    let out = cmd.output().expect("evhub runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Asserts the stderr of a failed run is exactly one `evhub: error: <kind>: ...` line.
pub fn assert_one_error_line(run: &Run, kind: &str) -> String {
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one error line, got {:?}",
        run.stderr
    );
    let prefix = format!("evhub: error: {kind}: ");
    assert!(
        lines[0].starts_with(&prefix),
        "expected `{prefix}...`, got {:?}",
        lines[0]
    );
    lines[0].to_owned()
}

/// A hub name no other test run uses.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}
