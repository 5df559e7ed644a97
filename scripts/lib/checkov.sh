# Sourced by scripts/test: static checks of infra/terraform with checkov (PyPI), in a
# venv of its own. Needs say(). Fails when any check fails; a check skipped inline
# (`# checkov:skip=<id>:<reason>`) must carry its reason.

run_checkov() {
  local venv="${SWITCHYARD_CHECKOV_VENV:-/var/tmp/switchyard-checkov-venv}" skips
  if [ ! -x "$venv/bin/checkov" ]; then
    command -v python3 >/dev/null 2>&1 || { say "the Terraform checks need python3 (apt-get install python3 python3-venv)"; exit 1; }
    say "installing checkov into $venv (once)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'checkov==3.3.30'
  fi
  skips=$(grep -rhoE 'checkov:skip=[A-Z0-9_]+[^[:space:]]*' infra/terraform || true)
  if printf '%s\n' "$skips" | grep -qE '^checkov:skip=[A-Z0-9_]+$'; then
    say "a checkov skip in infra/terraform has no reason (# checkov:skip=<id>:<reason>)"
    exit 1
  fi
  say "checkov over infra/terraform"
  # --skip-download: no network beyond the package registries; the checks ship with checkov.
  "$venv/bin/checkov" -d infra/terraform --framework terraform --compact --quiet --skip-download 2>/dev/null
}
