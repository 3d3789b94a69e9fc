# Sourced by the Python test scripts: `ensure_venv VENV REQUIREMENTS` creates the venv once and
# runs pip only when the requirements file changed (a stamp file records its hash).
ensure_venv() {
  local venv="$1" requirements="$2"
  local stamp="$venv/.requirements.sha256" want_hash
  export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
  if [ ! -x "$venv/bin/python" ]; then
    log "creating venv at $venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
  fi
  want_hash="$(sha256sum "$requirements" | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want_hash" ]; then
    log "installing pinned requirements"
    "$venv/bin/python" -m pip install --quiet --requirement "$requirements"
    echo "$want_hash" >"$stamp"
  fi
}
