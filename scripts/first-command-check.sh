#!/usr/bin/env bash
# Proves the README's first command works on a machine with only the Rust toolchain:
# `cargo run --example quickstart` in a clean target directory, with a `cmake` on PATH that
# fails (so a build that reaches for CMake — librdkafka — fails loudly), and checks that
# neither librdkafka nor the Azure SDK's TLS stack was compiled. Prints the cold build time.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
work="$(mktemp -d "${TMPDIR:-/tmp}/evhub-first-command.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin"
cat >"$work/bin/cmake" <<'SH'
#!/bin/sh
echo "first-command check: the quickstart must not need cmake" >&2
exit 127
SH
chmod +x "$work/bin/cmake"
started=$(date +%s)
if ! env -u CARGO_TARGET_DIR PATH="$work/bin:$PATH" CARGO_TARGET_DIR="$work/target" \
  cargo run -q --example quickstart >"$work/out.log" 2>&1; then
  cat "$work/out.log"
  echo "first-command check: FAILED: cargo run --example quickstart" >&2
  exit 1
fi
elapsed=$(($(date +%s) - started))
grep -q '^done$' "$work/out.log" || { cat "$work/out.log"; echo "first-command check: quickstart did not finish" >&2; exit 1; }
heavy=$(ls "$work/target/debug/deps" "$work/target/debug/build" 2>/dev/null | grep -E '^(lib)?(rdkafka|aws_lc|aws-lc|azure_)' | sort -u | tr '\n' ' ' || true)
if [ -n "$heavy" ]; then
  echo "first-command check: FAILED: the quickstart compiled $heavy" >&2
  exit 1
fi
echo "first-command check: ok: cold 'cargo run --example quickstart' in ${elapsed}s, no cmake, no librdkafka, no Azure SDK"
