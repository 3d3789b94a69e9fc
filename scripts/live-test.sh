#!/usr/bin/env bash
# Runs the evhub live conformance tests against real cloud resources, then removes them.
#
#   scripts/live-test.sh azure [--keep]   Event Hubs namespace (AMQP + Kafka endpoint) + blob checkpoints
#   scripts/live-test.sh kafka [--keep]   Confluent Cloud Basic cluster (SASL_SSL PLAIN)
#   scripts/live-test.sh --print-env-names [azure|kafka]
#
# Steps: check terraform and cloud credentials (exit 2 with one line, touching nothing, when
# either is missing) -> terraform init + apply in infra/<module> -> export every output listed
# for that module in infra/live-env.tsv under its EVHUB_LIVE_* name -> run the live tests ->
# terraform destroy (always, from an EXIT trap, unless --keep).
#
# EVHUB_LIVE_TEST_CMD is the test command, run with bash from the repository root. Convention:
# live tests have live_ in their test path and skip themselves (printing which variables are
# missing) when their EVHUB_LIVE_* variables are unset, so scripts/test.sh shows why they skipped.
# Extra Terraform inputs go in TF_VAR_* variables (see infra/README.md).
set -euo pipefail

: "${EVHUB_LIVE_TEST_CMD:=cargo test --workspace --all-features live_}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENV_TSV="$ROOT/infra/live-env.tsv"

fail() {
  printf 'live-test: %s\n' "$1" >&2
  exit "${2:-2}"
}

usage() {
  cat <<'EOF'
usage: scripts/live-test.sh <azure|kafka> [--keep]
       scripts/live-test.sh --print-env-names [azure|kafka]
EOF
}

# The infra/ module a stack argument provisions.
module_of() {
  case "$1" in
    azure) echo "azure-eventhubs" ;;
    kafka) echo "kafka" ;;
    *) return 1 ;;
  esac
}

# Prints "<variable>\t<terraform output>" for each contract row of a module (all modules when
# the argument is empty). infra/live-env.tsv is the only list of variables.
env_rows() {
  local want="$1" name module output rest
  [[ -r "$ENV_TSV" ]] || fail "cannot read $ENV_TSV"
  while IFS=$'\t' read -r name module output rest; do
    [[ -z "$name" || "$name" == \#* || "$name" == "name" ]] && continue
    [[ -z "$want" || "$module" == "$want" ]] || continue
    printf '%s\t%s\n' "$name" "$output"
  done <"$ENV_TSV"
}

have_azure_credentials() {
  if [[ -n "${ARM_TENANT_ID:-}" && -n "${ARM_SUBSCRIPTION_ID:-}" ]]; then
    if [[ -n "${ARM_CLIENT_ID:-}" && (-n "${ARM_CLIENT_SECRET:-}" || -n "${ARM_CLIENT_CERTIFICATE_PATH:-}" || "${ARM_USE_OIDC:-}" == "true") ]]; then
      return 0
    fi
    [[ "${ARM_USE_MSI:-}" == "true" ]] && return 0
  fi
  command -v az >/dev/null 2>&1 || return 1
  timeout 60 az account show --output none >/dev/null 2>&1 || return 1
  if [[ -z "${ARM_SUBSCRIPTION_ID:-}" ]]; then
    # azurerm 4.x no longer picks the CLI's default subscription by itself.
    ARM_SUBSCRIPTION_ID="$(timeout 60 az account show --query id --output tsv 2>/dev/null)" || return 1
    [[ -n "$ARM_SUBSCRIPTION_ID" ]] || return 1
    export ARM_SUBSCRIPTION_ID
  fi
}

have_confluent_credentials() {
  [[ -n "${CONFLUENT_CLOUD_API_KEY:-}" && -n "${CONFLUENT_CLOUD_API_SECRET:-}" ]]
}

stack=""
keep=0
print_names=0
for arg in "$@"; do
  case "$arg" in
    --keep) keep=1 ;;
    --print-env-names) print_names=1 ;;
    -h | --help) usage; exit 0 ;;
    azure | kafka)
      [[ -z "$stack" ]] || fail "give one stack, azure or kafka"
      stack="$arg"
      ;;
    *) fail "unknown argument '$arg' (usage: scripts/live-test.sh <azure|kafka> [--keep])" ;;
  esac
done

if ((print_names)); then
  module=""
  [[ -z "$stack" ]] || module="$(module_of "$stack")"
  env_rows "$module" | cut -f1
  exit 0
fi

[[ -n "$stack" ]] || fail "missing stack (usage: scripts/live-test.sh <azure|kafka> [--keep])"
module="$(module_of "$stack")"
module_dir="$ROOT/infra/$module"

# Preconditions first: nothing is written and nothing runs until both hold.
command -v terraform >/dev/null 2>&1 ||
  fail "terraform not found on PATH; install Terraform >= 1.9 (see infra/README.md)"
case "$stack" in
  azure)
    have_azure_credentials ||
      fail "no Azure credentials: run 'az login', or set ARM_TENANT_ID, ARM_SUBSCRIPTION_ID, ARM_CLIENT_ID and ARM_CLIENT_SECRET (or ARM_USE_OIDC/ARM_USE_MSI=true)"
    ;;
  kafka)
    have_confluent_credentials ||
      fail "no Confluent Cloud credentials: set CONFLUENT_CLOUD_API_KEY and CONFLUENT_CLOUD_API_SECRET (a Cloud API key)"
    ;;
esac

export TF_IN_AUTOMATION=1 TF_INPUT=0
tf() { terraform -chdir="$module_dir" "$@"; }

echo "live-test: terraform init in infra/$module"
tf init -input=false

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if ((keep)); then
    echo "live-test: --keep: resources left running; remove them with: terraform -chdir=infra/$module destroy" >&2
  else
    echo "live-test: terraform destroy in infra/$module"
    if ! tf destroy -auto-approve -input=false; then
      echo "live-test: DESTROY FAILED: resources may still be billed; rerun: terraform -chdir=infra/$module destroy" >&2
      ((rc != 0)) || rc=1
    fi
  fi
  exit "$rc"
}
# Armed before apply: a half-finished apply is destroyed too.
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "live-test: terraform apply in infra/$module"
tf apply -auto-approve -input=false

exported=()
while IFS=$'\t' read -r name output; do
  value="$(tf output -raw "$output")" || fail "terraform output '$output' (for $name) is missing in infra/$module" 1
  export "$name=$value"
  exported+=("$name")
done < <(env_rows "$module")
echo "live-test: exported ${exported[*]}"

echo "live-test: running: $EVHUB_LIVE_TEST_CMD"
cd "$ROOT"
bash -c "$EVHUB_LIVE_TEST_CMD"
