//! Offline checks of the Terraform under `infra/`: every file parses, the modules provide
//! every output `infra/live-env.tsv` promises (sensitive exactly when secret), variables and
//! outputs are documented, versions are pinned, and references resolve.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use evhub_live::vars;
use hcl::{Block, Body, Expression};

fn infra_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra")
}

/// One Terraform module: its files' text and parsed bodies.
struct Module {
    name: String,
    files: Vec<(PathBuf, String, Body)>,
}

impl Module {
    fn blocks<'a>(&'a self, identifier: &str) -> impl Iterator<Item = &'a Block> + 'a {
        let identifier = identifier.to_owned();
        self.files.iter().flat_map(move |(_, _, body)| {
            let identifier = identifier.clone();
            body.blocks()
                .filter(move |block| block.identifier() == identifier)
        })
    }

    /// Blocks `identifier "label" { ... }` by their first label.
    fn labelled(&self, identifier: &str) -> BTreeMap<String, &Block> {
        self.blocks(identifier)
            .map(|block| (label(block, 0).to_owned(), block))
            .collect()
    }

    /// `type.name` of every managed resource (`data.type.name` for data sources).
    fn resource_addresses(&self) -> BTreeSet<String> {
        let managed = self
            .blocks("resource")
            .map(|block| format!("{}.{}", label(block, 0), label(block, 1)));
        let data = self
            .blocks("data")
            .map(|block| format!("data.{}.{}", label(block, 0), label(block, 1)));
        managed.chain(data).collect()
    }
}

fn label(block: &Block, index: usize) -> &str {
    block
        .labels()
        .get(index)
        .map(|label| label.as_str())
        .unwrap_or_else(|| panic!("{} block without label {index}", block.identifier()))
}

fn attr<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes()
        .find(|attribute| attribute.key() == key)
        .map(|attribute| attribute.expr())
}

/// Every directory under infra/ that holds `.tf` files, parsed.
fn modules() -> Vec<Module> {
    let mut modules = Vec::new();
    let mut dirs: Vec<PathBuf> = fs::read_dir(infra_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let mut files = Vec::new();
        let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "tf"))
            .collect();
        paths.sort();
        for path in paths {
            let text = fs::read_to_string(&path).unwrap();
            let body = hcl::parse(&text)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
            files.push((path, text, body));
        }
        if !files.is_empty() {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            modules.push(Module { name, files });
        }
    }
    modules
}

fn module<'a>(modules: &'a [Module], name: &str) -> &'a Module {
    modules
        .iter()
        .find(|module| module.name == name)
        .unwrap_or_else(|| panic!("infra/{name} has no .tf files"))
}

#[test]
fn every_tf_file_parses_and_each_module_has_the_standard_files() {
    let modules = modules();
    let names: BTreeSet<&str> = modules.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["azure-eventhubs", "kafka"]));
    for module in &modules {
        let files: BTreeSet<String> = module
            .files
            .iter()
            .map(|(path, _, _)| path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for expected in ["main.tf", "outputs.tf", "variables.tf", "versions.tf"] {
            assert!(
                files.contains(expected),
                "infra/{} lacks {expected}",
                module.name
            );
        }
    }
}

/// Every file under `dir` (recursively) whose name ends with `suffix`.
fn files_ending_with(dir: &Path, suffix: &str, found: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_ending_with(&path, suffix, found);
        } else if path.to_string_lossy().ends_with(suffix) {
            found.push(path);
        }
    }
}

#[test]
fn terraform_test_files_parse_and_exercise_the_azure_module() {
    let mut tests = Vec::new();
    files_ending_with(&infra_dir(), ".tftest.hcl", &mut tests);
    assert!(
        tests
            .iter()
            .any(|path| path.starts_with(infra_dir().join("azure-eventhubs/tests"))),
        "infra/azure-eventhubs/tests has no .tftest.hcl: {tests:?}"
    );
    for path in tests {
        let body = hcl::parse(&fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
        let runs = body.blocks().filter(|b| b.identifier() == "run").count();
        assert!(runs > 0, "{} has no run blocks", path.display());
        // Mocked providers keep `terraform test` free of credentials and cloud calls.
        let mocked: BTreeSet<&str> = body
            .blocks()
            .filter(|b| b.identifier() == "mock_provider")
            .map(|b| label(b, 0))
            .collect();
        assert!(
            mocked.contains("azurerm"),
            "{} must mock azurerm",
            path.display()
        );
    }
}

#[test]
fn every_contract_output_exists_in_its_module_and_is_sensitive_exactly_when_secret() {
    let modules = modules();
    for var in vars() {
        let module = module(&modules, var.module());
        let outputs = module.labelled("output");
        let output = outputs.get(var.output()).unwrap_or_else(|| {
            panic!(
                "{} reads output '{}' that infra/{} does not define",
                var.name(),
                var.output(),
                var.module()
            )
        });
        let sensitive = matches!(
            attr(output.body(), "sensitive"),
            Some(Expression::Bool(true))
        );
        assert_eq!(
            sensitive,
            var.is_secret(),
            "output {}.{} sensitive = {sensitive}, but {} secret = {}",
            var.module(),
            var.output(),
            var.name(),
            var.is_secret()
        );
    }
}

#[test]
fn outputs_that_hold_credentials_are_sensitive_even_outside_the_contract() {
    for module in modules() {
        for (name, output) in module.labelled("output") {
            let looks_secret = ["password", "secret", "connection_string", "key"]
                .iter()
                .any(|word| name.contains(word));
            if looks_secret {
                assert!(
                    matches!(
                        attr(output.body(), "sensitive"),
                        Some(Expression::Bool(true))
                    ),
                    "output {}.{name} looks like a credential but is not sensitive",
                    module.name
                );
            }
        }
    }
}

#[test]
fn every_variable_and_output_is_documented_and_typed() {
    for module in modules() {
        for (name, variable) in module.labelled("variable") {
            let where_ = format!("variable {}.{name}", module.name);
            match attr(variable.body(), "description") {
                Some(Expression::String(text)) => {
                    assert!(text.len() >= 10, "{where_}: description too short")
                }
                other => panic!("{where_}: description must be a plain string, got {other:?}"),
            }
            assert!(attr(variable.body(), "type").is_some(), "{where_}: no type");
            let validations = variable
                .body()
                .blocks()
                .filter(|block| block.identifier() == "validation");
            for validation in validations {
                assert!(
                    attr(validation.body(), "condition").is_some(),
                    "{where_}: validation without condition"
                );
                assert!(
                    attr(validation.body(), "error_message").is_some(),
                    "{where_}: validation without error_message"
                );
            }
        }
        for (name, output) in module.labelled("output") {
            assert!(
                matches!(
                    attr(output.body(), "description"),
                    Some(Expression::String(_))
                ),
                "output {}.{name} has no description",
                module.name
            );
        }
    }
}

#[test]
fn terraform_and_every_provider_are_pinned() {
    for module in modules() {
        let terraform: Vec<&Block> = module.blocks("terraform").collect();
        assert_eq!(
            terraform.len(),
            1,
            "infra/{}: one terraform block",
            module.name
        );
        let body = terraform[0].body();
        match attr(body, "required_version") {
            Some(Expression::String(constraint)) => {
                assert!(
                    constraint.contains('<') || constraint.contains("~>"),
                    "infra/{}: required_version '{constraint}' has no upper bound",
                    module.name
                )
            }
            other => panic!("infra/{}: required_version missing: {other:?}", module.name),
        }
        let required: Vec<&Block> = body
            .blocks()
            .filter(|block| block.identifier() == "required_providers")
            .collect();
        assert_eq!(
            required.len(),
            1,
            "infra/{}: one required_providers",
            module.name
        );
        let mut providers = BTreeSet::new();
        for provider in required[0].body().attributes() {
            let Expression::Object(spec) = provider.expr() else {
                panic!(
                    "infra/{}: provider {} is not an object",
                    module.name,
                    provider.key()
                );
            };
            let field = |key: &str| {
                spec.iter()
                    .find(|(k, _)| k.to_string() == key)
                    .map(|(_, v)| v.clone())
            };
            let Some(Expression::String(version)) = field("version") else {
                panic!(
                    "infra/{}: provider {} has no version",
                    module.name,
                    provider.key()
                );
            };
            assert!(
                version.starts_with("~>") || version.contains('<'),
                "infra/{}: provider {} version '{version}' is not pinned",
                module.name,
                provider.key()
            );
            assert!(
                matches!(field("source"), Some(Expression::String(_))),
                "infra/{}: provider {} has no source",
                module.name,
                provider.key()
            );
            providers.insert(provider.key().to_owned());
        }
        // Every resource and data source belongs to a pinned provider.
        for address in module.resource_addresses() {
            let kind = address.trim_start_matches("data.");
            let provider = kind.split('_').next().unwrap();
            assert!(
                providers.contains(provider),
                "infra/{}: {address} uses provider {provider}, which is not in required_providers",
                module.name
            );
        }
    }
}

/// Dotted identifiers (`var.x`, `local.y`, `azurerm_eventhub.suite`, ...) outside comments.
fn references(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('#') || trimmed.starts_with("//") {
            continue;
        }
        let mut current = String::new();
        for c in line.chars().chain(std::iter::once(' ')) {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                current.push(c);
            } else {
                if current.contains('.') {
                    tokens.push(current.trim_matches('.').to_owned());
                }
                current.clear();
            }
        }
    }
    tokens
}

#[test]
fn every_reference_resolves_to_a_declaration_in_its_module() {
    for module in modules() {
        let variables: BTreeSet<String> = module.labelled("variable").into_keys().collect();
        let resources = module.resource_addresses();
        let mut locals = BTreeSet::new();
        for block in module.blocks("locals") {
            locals.extend(block.body().attributes().map(|a| a.key().to_owned()));
        }
        let provider_prefixes = ["azurerm_", "random_", "confluent_"];
        for (path, text, _) in &module.files {
            for reference in references(text) {
                let parts: Vec<&str> = reference.split('.').collect();
                let where_ = format!("{}: {reference}", path.display());
                match parts[0] {
                    "var" => assert!(
                        variables.contains(parts[1]),
                        "{where_}: undeclared variable"
                    ),
                    "local" => assert!(locals.contains(parts[1]), "{where_}: undeclared local"),
                    "data" => {
                        let address = format!("data.{}.{}", parts[1], parts[2]);
                        assert!(
                            resources.contains(&address),
                            "{where_}: undeclared data source"
                        );
                    }
                    kind if provider_prefixes.iter().any(|p| kind.starts_with(p)) => {
                        let address = format!("{}.{}", parts[0], parts[1]);
                        assert!(
                            resources.contains(&address),
                            "{where_}: undeclared resource"
                        );
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Arguments that azurerm 4.x deprecated and 5.x removed, or that 4.0 renamed: using one
/// would break `terraform plan` on a current provider.
#[test]
fn no_resource_uses_arguments_that_azurerm_deprecated_or_removed() {
    let forbidden: &[(&str, &[&str])] = &[
        (
            "azurerm_eventhub",
            &["namespace_name", "resource_group_name"],
        ),
        ("azurerm_storage_container", &["storage_account_name"]),
        (
            "azurerm_storage_account",
            &[
                "enable_https_traffic_only",
                "allow_blob_public_access",
                "queue_properties",
                "static_website",
            ],
        ),
        (
            "azurerm_eventhub_namespace",
            &["kafka_enabled", "zone_redundant"],
        ),
    ];
    let azure = modules()
        .into_iter()
        .find(|m| m.name == "azure-eventhubs")
        .unwrap();
    let mut seen = BTreeSet::new();
    for block in azure.blocks("resource") {
        let kind = label(block, 0);
        seen.insert(kind.to_owned());
        if let Some((_, args)) = forbidden.iter().find(|(k, _)| *k == kind) {
            for key in block.body().attributes().map(|a| a.key()) {
                assert!(
                    !args.contains(&key),
                    "{kind}.{}: '{key}' is deprecated or removed",
                    label(block, 1)
                );
            }
            for nested in block.body().blocks() {
                assert!(
                    !args.contains(&nested.identifier()),
                    "{kind}: block '{}' is deprecated or removed",
                    nested.identifier()
                );
            }
        }
    }
    for (kind, _) in forbidden {
        assert!(
            seen.contains(*kind),
            "the check lists {kind}, which infra/azure-eventhubs no longer uses"
        );
    }
}

#[test]
fn the_azure_module_enforces_the_security_settings_the_suite_relies_on() {
    let azure = modules()
        .into_iter()
        .find(|m| m.name == "azure-eventhubs")
        .unwrap();
    let resource = |kind: &str, name: &str| -> Body {
        azure
            .blocks("resource")
            .find(|b| label(b, 0) == kind && label(b, 1) == name)
            .unwrap_or_else(|| panic!("no {kind}.{name}"))
            .body()
            .clone()
    };
    let string = |body: &Body, key: &str| match attr(body, key) {
        Some(Expression::String(s)) => s.clone(),
        other => panic!("{key}: expected a string literal, got {other:?}"),
    };
    let namespace = resource("azurerm_eventhub_namespace", "suite");
    assert_eq!(
        string(&namespace, "sku"),
        "Standard",
        "the Kafka endpoint needs Standard or above"
    );
    assert_eq!(string(&namespace, "minimum_tls_version"), "1.2");
    assert!(attr(&namespace, "local_authentication_enabled").is_some());

    let account = resource("azurerm_storage_account", "checkpoints");
    assert_eq!(string(&account, "min_tls_version"), "TLS1_2");
    assert_eq!(
        attr(&account, "https_traffic_only_enabled"),
        Some(&Expression::Bool(true))
    );
    assert_eq!(
        attr(&account, "allow_nested_items_to_be_public"),
        Some(&Expression::Bool(false))
    );
    let container = resource("azurerm_storage_container", "checkpoints");
    assert_eq!(string(&container, "container_access_type"), "private");

    // Least privilege: exactly one of send/listen on the hub rules, manage only on the manage rule.
    for (name, send, listen) in [("send", true, false), ("listen", false, true)] {
        let rule = resource("azurerm_eventhub_authorization_rule", name);
        assert_eq!(
            attr(&rule, "send"),
            Some(&Expression::Bool(send)),
            "{name}.send"
        );
        assert_eq!(
            attr(&rule, "listen"),
            Some(&Expression::Bool(listen)),
            "{name}.listen"
        );
        assert_eq!(
            attr(&rule, "manage"),
            Some(&Expression::Bool(false)),
            "{name}.manage"
        );
    }
}

#[test]
fn every_checkov_suppression_names_a_check_and_gives_a_reason() {
    for module in modules() {
        for (path, text, _) in &module.files {
            for line in text.lines().filter(|l| l.contains("checkov:skip")) {
                let rest = line.trim_start().trim_start_matches('#').trim();
                let rest = rest
                    .strip_prefix("checkov:skip=")
                    .unwrap_or_else(|| panic!("{}: malformed suppression: {line}", path.display()));
                let (check, reason) = rest.split_once(':').unwrap_or_else(|| {
                    panic!(
                        "{}: suppression without justification: {line}",
                        path.display()
                    )
                });
                assert!(
                    check.starts_with("CKV"),
                    "{}: {check} is not a check id",
                    path.display()
                );
                assert!(
                    reason.trim().len() >= 20,
                    "{}: justification too short: {line}",
                    path.display()
                );
            }
        }
    }
}
