//! `infra/live-env.tsv`, parsed: the one list of `EVHUB_LIVE_*` variables.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::OnceLock;

use crate::Target;

/// The text of `infra/live-env.tsv`, compiled in. `scripts/live-test.sh` reads the same file.
pub const ENV_TABLE: &str = include_str!("../../../infra/live-env.tsv");

/// The column header `infra/live-env.tsv` must start its data with.
const HEADER: [&str; 6] = [
    "name",
    "module",
    "output",
    "secret",
    "required_by",
    "description",
];

/// The Terraform modules under `infra/` that can produce variables.
const MODULES: [&str; 2] = ["azure-eventhubs", "kafka"];

/// One row of the contract: an environment variable and where its value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveVar {
    name: String,
    module: String,
    output: String,
    secret: bool,
    required_by: Vec<Target>,
    description: String,
}

impl LiveVar {
    /// The environment variable, e.g. `EVHUB_LIVE_EVENTHUBS_HUB`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Terraform module under `infra/` that produces it, e.g. `azure-eventhubs`.
    pub fn module(&self) -> &str {
        &self.module
    }

    /// The Terraform output of that module holding the value.
    pub fn output(&self) -> &str {
        &self.output
    }

    /// Whether the value is a secret: a `sensitive` output, redacted in `Debug`.
    pub fn is_secret(&self) -> bool {
        self.secret
    }

    /// The targets whose live tests cannot run without this variable; empty when optional.
    pub fn required_by(&self) -> &[Target] {
        &self.required_by
    }

    /// Whether `target`'s live tests need this variable.
    pub fn is_required_by(&self, target: Target) -> bool {
        self.required_by.contains(&target)
    }

    /// What the variable holds, in one line.
    pub fn description(&self) -> &str {
        &self.description
    }
}

/// Why an environment table could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvTableError {
    /// 1-based line number in the table text.
    pub line: usize,
    /// What is wrong with that line.
    pub message: String,
}

impl fmt::Display for EnvTableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "live-env.tsv line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for EnvTableError {}

/// Parses an environment table in the `infra/live-env.tsv` format.
///
/// Blank lines and lines starting with `#` are ignored; the first other line must be the
/// header `name module output secret required_by description` (tab separated).
/// Each row is checked: the name is a unique upper-case `EVHUB_LIVE_*` identifier, the
/// module exists, the output is a Terraform identifier, `secret` is `yes` or `no`, and
/// `required_by` is `-` or backend ids whose module is the row's module (a variable can only
/// be required by a target that the same `scripts/live-test.sh` stack provisions).
pub fn parse_env_table(text: &str) -> Result<Vec<LiveVar>, EnvTableError> {
    let mut vars = Vec::new();
    let mut names = BTreeSet::new();
    let mut saw_header = false;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let err = |message: String| EnvTableError { line, message };
        if raw.trim().is_empty() || raw.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = raw.split('\t').collect();
        if cols.len() != HEADER.len() {
            return Err(err(format!(
                "expected {} tab-separated columns, found {}",
                HEADER.len(),
                cols.len()
            )));
        }
        if !saw_header {
            if cols != HEADER {
                return Err(err(format!("expected the header {}", HEADER.join(" "))));
            }
            saw_header = true;
            continue;
        }
        let [name, module, output, secret, required_by, description] =
            [cols[0], cols[1], cols[2], cols[3], cols[4], cols[5]];

        let name_ok = name.strip_prefix("EVHUB_LIVE_").is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        });
        if !name_ok {
            return Err(err(format!(
                "'{name}' is not an upper-case EVHUB_LIVE_* name"
            )));
        }
        if !names.insert(name) {
            return Err(err(format!("'{name}' is listed twice")));
        }
        if !MODULES.contains(&module) {
            return Err(err(format!(
                "module '{module}' is not one of {}",
                MODULES.join(", ")
            )));
        }
        let output_ok = output.starts_with(|c: char| c.is_ascii_lowercase())
            && output
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !output_ok {
            return Err(err(format!(
                "output '{output}' is not a lower-case Terraform identifier"
            )));
        }
        let secret = match secret {
            "yes" => true,
            "no" => false,
            other => return Err(err(format!("secret must be yes or no, not '{other}'"))),
        };
        let required_by = if required_by == "-" {
            Vec::new()
        } else {
            let mut targets = Vec::new();
            for id in required_by.split(',') {
                let target: Target = id.parse().map_err(|e| err(format!("{e}")))?;
                if target.module() != module {
                    return Err(err(format!(
                        "{name} comes from module {module}, but target {target} is provisioned by {}",
                        target.module()
                    )));
                }
                if targets.contains(&target) {
                    return Err(err(format!("target {target} is listed twice")));
                }
                targets.push(target);
            }
            targets
        };
        if description.trim().is_empty() {
            return Err(err(format!("{name} has no description")));
        }
        vars.push(LiveVar {
            name: name.to_owned(),
            module: module.to_owned(),
            output: output.to_owned(),
            secret,
            required_by,
            description: description.to_owned(),
        });
    }
    if !saw_header {
        return Err(EnvTableError {
            line: text.lines().count(),
            message: "no header line".to_owned(),
        });
    }
    Ok(vars)
}

/// Every `EVHUB_LIVE_*` variable, in the order of `infra/live-env.tsv`.
///
/// # Panics
///
/// If the compiled-in table is malformed. That is a defect of the checked-in file, caught by
/// this crate's own tests, never a runtime condition.
pub fn vars() -> &'static [LiveVar] {
    static VARS: OnceLock<Vec<LiveVar>> = OnceLock::new();
    VARS.get_or_init(|| match parse_env_table(ENV_TABLE) {
        Ok(vars) => vars,
        Err(e) => panic!("infra/live-env.tsv is malformed: {e}"),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const HEAD: &str = "name\tmodule\toutput\tsecret\trequired_by\tdescription\n";

    fn parse_row(row: &str) -> Result<Vec<LiveVar>, EnvTableError> {
        parse_env_table(&format!("# comment\n\n{HEAD}{row}\n"))
    }

    #[test]
    fn the_checked_in_table_parses_and_covers_every_target() {
        let vars = parse_env_table(ENV_TABLE).unwrap();
        assert_eq!(vars.len(), super::vars().len());
        for target in Target::ALL {
            assert!(
                vars.iter().any(|v| v.is_required_by(target)),
                "no variable is required by {target}"
            );
        }
        assert!(vars.iter().any(LiveVar::is_secret));
    }

    #[test]
    fn a_valid_row_is_read_column_by_column() {
        let vars = parse_row(
            "EVHUB_LIVE_X\tazure-eventhubs\tx_out\tyes\teventhubs,eventhubs-kafka\tThe x",
        )
        .unwrap();
        assert_eq!(vars.len(), 1);
        let var = &vars[0];
        assert_eq!(var.name(), "EVHUB_LIVE_X");
        assert_eq!(var.module(), "azure-eventhubs");
        assert_eq!(var.output(), "x_out");
        assert!(var.is_secret());
        assert_eq!(
            var.required_by(),
            &[Target::EventHubs, Target::EventHubsKafka]
        );
        assert!(!var.is_required_by(Target::Kafka));
        assert_eq!(var.description(), "The x");
        let optional = parse_row("EVHUB_LIVE_Y\tkafka\ty\tno\t-\tOptional y").unwrap();
        assert!(optional[0].required_by().is_empty());
    }

    #[test]
    fn malformed_rows_are_rejected_with_their_line() {
        let cases = [
            ("EVHUB_LIVE_X\tkafka\tx\tno\tkafka", "columns"),
            ("LIVE_X\tkafka\tx\tno\tkafka\td", "EVHUB_LIVE_"),
            ("EVHUB_LIVE_x\tkafka\tx\tno\tkafka\td", "upper-case"),
            ("EVHUB_LIVE_X\taws\tx\tno\tkafka\td", "module 'aws'"),
            (
                "EVHUB_LIVE_X\tkafka\tX-Out\tno\tkafka\td",
                "Terraform identifier",
            ),
            ("EVHUB_LIVE_X\tkafka\tx\ttrue\tkafka\td", "yes or no"),
            (
                "EVHUB_LIVE_X\tkafka\tx\tno\tamqp\td",
                "unknown live target 'amqp'",
            ),
            (
                "EVHUB_LIVE_X\tkafka\tx\tno\teventhubs\td",
                "provisioned by azure-eventhubs",
            ),
            ("EVHUB_LIVE_X\tkafka\tx\tno\tkafka,kafka\td", "listed twice"),
            ("EVHUB_LIVE_X\tkafka\tx\tno\tkafka\t ", "no description"),
            (
                "EVHUB_LIVE_X\tkafka\tx\tno\tkafka\td\nEVHUB_LIVE_X\tkafka\tx\tno\tkafka\td",
                "'EVHUB_LIVE_X' is listed twice",
            ),
        ];
        for (row, expected) in cases {
            let err = parse_row(row).unwrap_err();
            assert!(err.line >= 4, "{row:?}: {err}");
            assert!(err.to_string().contains(expected), "{row:?}: {err}");
        }
    }

    #[test]
    fn the_header_is_required() {
        let err = parse_env_table("EVHUB_LIVE_X\tkafka\tx\tno\tkafka\td\n").unwrap_err();
        assert!(err.message.contains("header"), "{err}");
        let err = parse_env_table("# only comments\n").unwrap_err();
        assert!(err.message.contains("no header"), "{err}");
    }
}
