//! `scripts/live-test.sh`, run offline with a scrubbed environment and a fake `terraform`:
//! it exports exactly the variables of `infra/live-env.tsv` (the list the live tests read
//! through `evhub_live`), destroys what it applied, and without terraform or credentials it
//! fails with one line and touches nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use evhub_live::{vars, LiveConfig, Target};
use tempfile::TempDir;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn script() -> PathBuf {
    repo_root().join("scripts/live-test.sh")
}

/// Absolute path of a tool on the test process's PATH.
fn which(tool: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{tool} not found on PATH"))
}

/// A sandbox: an empty HOME and working directory, and a bin directory holding only the
/// tools the script needs (so no real terraform, az or cargo can be reached).
struct Sandbox {
    dir: TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let sandbox = Sandbox {
            dir: tempfile::tempdir().unwrap(),
        };
        for sub in ["home", "work", "bin", "log"] {
            fs::create_dir(sandbox.path(sub)).unwrap();
        }
        for tool in ["bash", "env", "dirname", "cut", "timeout", "cat"] {
            symlink(which(tool), sandbox.path("bin").join(tool)).unwrap();
        }
        sandbox
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    /// A fake terraform that logs its arguments and answers `output -raw NAME` with
    /// `out:NAME`; `apply` fails when FAKE_TF_FAIL_APPLY is set.
    fn install_fake_terraform(&self) {
        let fake = self.path("bin").join("terraform");
        let text = format!(
            r#"#!{bash}
printf '%s\n' "$*" >> "{log}"
case "$2" in
  output) printf 'out:%s' "$4" ;;
  apply) [ -z "${{FAKE_TF_FAIL_APPLY:-}}" ] || exit 7 ;;
esac
"#,
            bash = which("bash").display(),
            log = self.terraform_log().display()
        );
        fs::write(&fake, text).unwrap();
        fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn terraform_log(&self) -> PathBuf {
        self.path("log/terraform.log")
    }

    fn terraform_calls(&self) -> Vec<String> {
        match fs::read_to_string(self.terraform_log()) {
            Ok(text) => text.lines().map(str::to_owned).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Runs the script with only `env` in its environment (plus PATH, HOME, TMPDIR).
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = Command::new(which("bash"));
        command
            .arg(script())
            .args(args)
            .env_clear()
            .env("PATH", self.path("bin"))
            .env("HOME", self.path("home"))
            .env("TMPDIR", self.path("work"))
            .current_dir(self.path("work"));
        for (key, value) in env {
            command.env(key, value);
        }
        command.output().unwrap()
    }

    /// Everything under home/ and work/ (the places the script could write to).
    fn written_files(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for sub in ["home", "work"] {
            collect_files(&self.path(sub), &mut found);
        }
        found
    }
}

fn collect_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_files(&path, found);
        }
        found.push(path);
    }
}

/// Every path under infra/ with its modification time.
fn infra_snapshot() -> BTreeMap<PathBuf, SystemTime> {
    let mut files = Vec::new();
    collect_files(&repo_root().join("infra"), &mut files);
    files
        .into_iter()
        .map(|path| {
            let modified = fs::metadata(&path).unwrap().modified().unwrap();
            (path, modified)
        })
        .collect()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The contract's variable names for one module (all modules for None), from the Rust side.
fn contract_names(module: Option<&str>) -> Vec<String> {
    vars()
        .iter()
        .filter(|var| module.is_none_or(|m| var.module() == m))
        .map(|var| var.name().to_owned())
        .collect()
}

#[test]
fn print_env_names_lists_exactly_the_contract_per_stack_and_in_all() {
    let sandbox = Sandbox::new();
    for (args, module) in [
        (vec!["--print-env-names"], None),
        (vec!["--print-env-names", "azure"], Some("azure-eventhubs")),
        (vec!["--print-env-names", "kafka"], Some("kafka")),
    ] {
        let output = sandbox.run(&args, &[]);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        let printed: Vec<String> = stdout(&output).lines().map(str::to_owned).collect();
        assert_eq!(printed, contract_names(module), "{args:?}");
    }
}

const AZURE_SERVICE_PRINCIPAL: [(&str, &str); 4] = [
    ("ARM_TENANT_ID", "00000000-0000-0000-0000-000000000001"),
    (
        "ARM_SUBSCRIPTION_ID",
        "00000000-0000-0000-0000-000000000002",
    ),
    ("ARM_CLIENT_ID", "00000000-0000-0000-0000-000000000003"),
    ("ARM_CLIENT_SECRET", "fake-secret"),
];

/// Runs a full `live-test.sh <stack>` against the fake terraform, with a test command that
/// dumps its environment; returns the EVHUB_LIVE_* variables the tests saw.
fn run_full(
    sandbox: &Sandbox,
    args: &[&str],
    extra_env: &[(&str, &str)],
) -> (Output, BTreeMap<String, String>) {
    sandbox.install_fake_terraform();
    let dump = sandbox.path("log/env.dump");
    let test_cmd = format!("env > '{}'", dump.display());
    let mut env: Vec<(&str, &str)> = vec![("EVHUB_LIVE_TEST_CMD", test_cmd.as_str())];
    env.extend_from_slice(extra_env);
    let output = sandbox.run(args, &env);
    let seen = fs::read_to_string(&dump)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_once('='))
        .filter(|(name, _)| name.starts_with("EVHUB_LIVE_") && *name != "EVHUB_LIVE_TEST_CMD")
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    (output, seen)
}

#[test]
fn azure_run_exports_exactly_the_contract_and_the_live_tests_accept_it() {
    let sandbox = Sandbox::new();
    let (output, seen) = run_full(&sandbox, &["azure"], &AZURE_SERVICE_PRINCIPAL);
    assert!(output.status.success(), "{}", stderr(&output));

    let names: BTreeSet<&String> = seen.keys().collect();
    let expected = contract_names(Some("azure-eventhubs"));
    assert_eq!(
        names,
        expected.iter().collect(),
        "exported names drifted from infra/live-env.tsv"
    );
    for var in vars()
        .iter()
        .filter(|var| var.module() == "azure-eventhubs")
    {
        assert_eq!(
            seen[var.name()],
            format!("out:{}", var.output()),
            "{}",
            var.name()
        );
    }
    // What the script exported is what both Azure targets' live tests need.
    for target in [Target::EventHubs, Target::EventHubsKafka] {
        let live = LiveConfig::from_lookup(target, |name| seen.get(name).cloned());
        assert!(live.is_ok(), "{target}: {}", live.unwrap_err());
    }
    // Secrets never reach the script's own output.
    for var in vars().iter().filter(|var| var.is_secret()) {
        let value = format!("out:{}", var.output());
        assert!(!stdout(&output).contains(&value) && !stderr(&output).contains(&value));
    }

    let calls = sandbox.terraform_calls();
    let verbs: Vec<&str> = calls
        .iter()
        .map(|c| c.split(' ').nth(1).unwrap_or(""))
        .collect();
    assert_eq!(verbs.first(), Some(&"init"), "{calls:?}");
    assert_eq!(verbs.get(1), Some(&"apply"), "{calls:?}");
    assert_eq!(verbs.last(), Some(&"destroy"), "{calls:?}");
    assert!(calls.iter().all(|c| c.starts_with(&format!(
        "-chdir={}",
        repo_root().join("infra/azure-eventhubs").display()
    ))));
}

#[test]
fn kafka_run_exports_exactly_the_kafka_contract() {
    let sandbox = Sandbox::new();
    let creds = [
        ("CONFLUENT_CLOUD_API_KEY", "key"),
        ("CONFLUENT_CLOUD_API_SECRET", "secret"),
    ];
    let (output, seen) = run_full(&sandbox, &["kafka"], &creds);
    assert!(output.status.success(), "{}", stderr(&output));
    let names: Vec<&String> = seen.keys().collect();
    let mut expected = contract_names(Some("kafka"));
    expected.sort();
    assert_eq!(names, expected.iter().collect::<Vec<_>>());
    assert!(LiveConfig::from_lookup(Target::Kafka, |name| seen.get(name).cloned()).is_ok());
    assert_eq!(
        sandbox
            .terraform_calls()
            .last()
            .map(|c| c.contains(" destroy ")),
        Some(true)
    );
}

#[test]
fn keep_leaves_the_resources_and_says_how_to_destroy_them() {
    let sandbox = Sandbox::new();
    let (output, seen) = run_full(&sandbox, &["azure", "--keep"], &AZURE_SERVICE_PRINCIPAL);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!seen.is_empty());
    let calls = sandbox.terraform_calls();
    assert!(!calls.iter().any(|c| c.contains(" destroy")), "{calls:?}");
    assert!(stderr(&output).contains("terraform -chdir=infra/azure-eventhubs destroy"));
}

#[test]
fn failing_tests_or_a_failing_apply_still_destroy_and_fail_the_run() {
    // The test command's exit code is the script's.
    let sandbox = Sandbox::new();
    sandbox.install_fake_terraform();
    let mut env = AZURE_SERVICE_PRINCIPAL.to_vec();
    env.push(("EVHUB_LIVE_TEST_CMD", "exit 3"));
    let output = sandbox.run(&["azure"], &env);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(sandbox
        .terraform_calls()
        .last()
        .unwrap()
        .contains(" destroy "));

    // A failed apply may have created resources: they are destroyed and no tests run.
    let sandbox = Sandbox::new();
    let ran = sandbox.path("log/tests-ran");
    let test_cmd = format!(": > '{}'", ran.display());
    let mut env = AZURE_SERVICE_PRINCIPAL.to_vec();
    env.push(("FAKE_TF_FAIL_APPLY", "1"));
    env.push(("EVHUB_LIVE_TEST_CMD", test_cmd.as_str()));
    sandbox.install_fake_terraform();
    let output = sandbox.run(&["azure"], &env);
    assert_eq!(output.status.code(), Some(7), "{}", stderr(&output));
    let calls = sandbox.terraform_calls();
    assert!(calls.last().unwrap().contains(" destroy "), "{calls:?}");
    assert!(!calls.iter().any(|c| c.contains(" output ")), "{calls:?}");
    assert!(!ran.exists());
}

/// Asserts the one-line failure contract: non-zero exit, a single `live-test: ...` line on
/// stderr mentioning `expected`, nothing on stdout, terraform never run, no file written.
fn assert_refused(sandbox: &Sandbox, args: &[&str], env: &[(&str, &str)], expected: &str) {
    let before = infra_snapshot();
    let output = sandbox.run(args, env);
    let err = stderr(&output);
    assert!(!output.status.success(), "{args:?} succeeded");
    assert_eq!(err.lines().count(), 1, "{args:?}: not one line: {err:?}");
    assert!(
        err.starts_with("live-test: ") && err.contains(expected),
        "{args:?}: {err:?}"
    );
    assert_eq!(stdout(&output), "", "{args:?}");
    assert_eq!(sandbox.terraform_calls(), Vec::<String>::new(), "{args:?}");
    assert_eq!(sandbox.written_files(), Vec::<PathBuf>::new(), "{args:?}");
    assert_eq!(infra_snapshot(), before, "{args:?} changed infra/");
}

#[test]
fn without_terraform_the_script_refuses_in_one_line_and_touches_nothing() {
    let sandbox = Sandbox::new();
    assert_refused(
        &sandbox,
        &["azure"],
        &AZURE_SERVICE_PRINCIPAL,
        "terraform not found",
    );
}

#[test]
fn without_cloud_credentials_the_script_refuses_in_one_line_and_touches_nothing() {
    let sandbox = Sandbox::new();
    sandbox.install_fake_terraform();
    assert_refused(&sandbox, &["azure"], &[], "no Azure credentials");
    // A partial service principal (no secret) is not a credential either.
    assert_refused(
        &sandbox,
        &["azure"],
        &AZURE_SERVICE_PRINCIPAL[..3],
        "no Azure credentials",
    );
    assert_refused(
        &sandbox,
        &["kafka"],
        &[("CONFLUENT_CLOUD_API_KEY", "key")],
        "no Confluent Cloud credentials",
    );
}

#[test]
fn bad_arguments_are_refused_in_one_line() {
    let sandbox = Sandbox::new();
    sandbox.install_fake_terraform();
    assert_refused(&sandbox, &[], &[], "missing stack");
    assert_refused(&sandbox, &["aws"], &[], "unknown argument 'aws'");
    assert_refused(&sandbox, &["azure", "kafka"], &[], "one stack");
}
