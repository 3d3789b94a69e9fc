#!/usr/bin/env bash
# Static security scan of the Terraform under infra/ with checkov (pinned), fully offline
# once installed. Fails on any failed check or parse error; suppressions live inline in the
# .tf files as `#checkov:skip=CKV_...:justification` and are listed in the output.
#
# checkov is installed once into $EVHUB_CACHE/venv-checkov (default ~/.cache/evhub) and
# reinstalled only when CHECKOV_VERSION (the pin below) or the Python version changes.
# Non-interactive and bounded: pip gets INSTALL_TIMEOUT seconds, the scan SCAN_TIMEOUT.
# `terraform fmt -check` runs too when terraform is on PATH (it needs no providers and, with
# CHECKPOINT_DISABLE, no network).
set -euo pipefail

CHECKOV_VERSION="3.3.30"
INSTALL_TIMEOUT="${INFRA_CHECK_INSTALL_TIMEOUT:-900}"
SCAN_TIMEOUT="${INFRA_CHECK_SCAN_TIMEOUT:-600}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${EVHUB_CACHE:-$HOME/.cache/evhub}"
VENV="$CACHE/venv-checkov"
STAMP="$VENV/.evhub-pin"

fail() {
  printf 'infra-check: %s\n' "$1" >&2
  exit 1
}

command -v python3 >/dev/null 2>&1 || fail "python3 not found (scripts/install-deps.sh installs it)"
mkdir -p "$CACHE"

install_checkov() {
  local want
  want="checkov==$CHECKOV_VERSION $(python3 -c 'import sys; print("python%d.%d" % sys.version_info[:2])')"
  if [[ -x "$VENV/bin/checkov" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
    return 0
  fi
  echo "infra-check: installing $want into $VENV"
  if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    rm -rf "$VENV"
    python3 -m venv "$VENV" || fail "python3 -m venv failed (install python3-venv: scripts/install-deps.sh)"
  fi
  rm -f "$STAMP"
  PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 timeout "$INSTALL_TIMEOUT" \
    "$VENV/bin/pip" install --quiet "checkov==$CHECKOV_VERSION" ||
    fail "pip install checkov==$CHECKOV_VERSION failed or timed out after ${INSTALL_TIMEOUT}s"
  printf '%s' "$want" >"$STAMP"
}

# One install at a time when several test runs share the cache.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE/venv-checkov.lock"
  flock -w "$INSTALL_TIMEOUT" 9 || fail "timed out waiting for $CACHE/venv-checkov.lock"
fi
install_checkov
if command -v flock >/dev/null 2>&1; then
  exec 9>&-
fi

if command -v terraform >/dev/null 2>&1; then
  CHECKPOINT_DISABLE=1 terraform fmt -check -recursive -diff "$ROOT/infra" 2>/dev/null ||
    fail "terraform fmt -check failed; run: terraform fmt -recursive infra"
fi

# No traffic leaves the machine: no platform mapping download, no update check, no upload.
report="$(
  cd "$ROOT" &&
    BC_SKIP_MAPPING=TRUE CKV_SKIP_PACKAGE_UPDATE_CHECK=true \
      timeout "$SCAN_TIMEOUT" "$VENV/bin/checkov" --directory infra --framework terraform \
      --skip-download --skip-results-upload --output json --soft-fail 2>/dev/null
)" || fail "checkov did not finish (exit $?) within ${SCAN_TIMEOUT}s"

# --soft-fail keeps checkov's exit code 0 so the verdict below is made on the full report.
printf '%s' "$report" | "$VENV/bin/python" -c '
import json, sys
data = json.load(sys.stdin)
reports = data if isinstance(data, list) else [data]
passed = failed = skipped = parse_errors = 0
for report in reports:
    summary = report.get("summary", {})
    passed += summary.get("passed", 0)
    failed += summary.get("failed", 0)
    skipped += summary.get("skipped", 0)
    parse_errors += summary.get("parsing_errors", 0)
    results = report.get("results", {})
    for check in results.get("failed_checks", []):
        lines = check.get("file_line_range", ["?", "?"])
        print("FAILED  %s %s (%s:%s-%s) %s" % (check["check_id"], check["resource"],
              check.get("file_path", "?"), lines[0], lines[-1], check.get("check_name", "")))
    for check in results.get("skipped_checks", []):
        reason = (check.get("check_result") or {}).get("suppress_comment", "")
        print("skipped %s %s: %s" % (check["check_id"], check["resource"], reason))
verdict = "passed" if failed == 0 and parse_errors == 0 and passed > 0 else "FAILED"
print("infra-check: checkov %s %s (%d checks passed, %d failed, %d suppressed, %d parse errors)"
      % (sys.argv[1], verdict, passed, failed, skipped, parse_errors))
sys.exit(0 if verdict == "passed" else 1)
' "$CHECKOV_VERSION"
