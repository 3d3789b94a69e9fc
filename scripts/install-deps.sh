#!/usr/bin/env bash
# Installs the system packages the workspace needs to build and test.
# Idempotent: packages already present are skipped, so repeated runs are quick.
set -euo pipefail

# Java and Maven run the Apache Kafka broker in the tests (scripts/kafka.sh); npm runs Azurite.
need=(build-essential cmake pkg-config libssl-dev zlib1g-dev libcurl4-openssl-dev python3-venv)
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
command -v npm >/dev/null 2>&1 || need+=(npm)
missing=()
for pkg in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
