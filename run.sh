#!/usr/bin/env bash
# thingledger's one entry point. Every command first makes sure the toolchain
# is installed (quickly skipped when nothing changed), then does its job.
#
#   ./run.sh demo     set up, then tell every story on local chains: the sales order
#                     (scripts/demo.py), the field service (scripts/service_demo.py), then the
#                     device mirrored from a public chain to a permissioned one through the
#                     bridge (scripts/bridge_demo.py, which starts and stops its own two chains);
#                     `./run.sh demo sales`, `./run.sh demo service` or `./run.sh demo bridge` tells one
#   ./run.sh test     set up, then run every test gate
#   ./run.sh bench    set up, then print the benchmark figures
#   ./run.sh setup    only set up
#
# Needs: bash, Python >= 3.10 with venv, Node >= 18 with npm, and the package
# registries (PyPI, npm). Nothing else is downloaded.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"

TOOLCHAIN="$ROOT/.toolchain"
VENV="$ROOT/.venv"
SOLC_VERSION="$(node -p 'require("./package.json").dependencies.solc' 2>/dev/null || true)"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

# A stamp holds the hash of the files an install step depends on; the step
# runs again only when that hash changes.
inputs_hash() { cat "$@" | sha256sum | cut -d' ' -f1; }
stamp_matches() { [[ -f "$TOOLCHAIN/stamps/$1" && "$(cat "$TOOLCHAIN/stamps/$1")" == "$2" ]]; }
stamp_write() { mkdir -p "$TOOLCHAIN/stamps"; printf '%s' "$2" > "$TOOLCHAIN/stamps/$1"; }

find_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.11 python3.12 python3.10 python3; do
    [[ -n "$candidate" ]] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] < (3, 13))' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

setup_node() {
  command -v npm >/dev/null 2>&1 || die "npm not found: install Node.js 18 or newer"
  local hash
  hash="$(inputs_hash package.json package-lock.json)"
  stamp_matches npm "$hash" && [[ -d node_modules ]] && return 0
  say "Installing anvil, forge, solc and OpenZeppelin from npm (versions locked by package-lock.json)"
  # Not `npm ci`: the forge and anvil packages list optional per-platform packages that were never
  # published for every platform, which `npm ci` refuses. `npm install` installs the locked versions.
  npm install --no-audit --no-fund --loglevel=error
  stamp_write npm "$(inputs_hash package.json package-lock.json)"
}

# Native binaries shipped inside the npm packages, and the solc WebAssembly
# build presented as a native solc (py-solc-x looks for solc-v<version>).
link_toolchain() {
  local os arch platform
  case "$(uname -s)" in Linux) os=linux ;; Darwin) os=darwin ;; *) die "unsupported OS $(uname -s)" ;; esac
  case "$(uname -m)" in x86_64 | amd64) arch=amd64 ;; aarch64 | arm64) arch=arm64 ;; *) die "unsupported CPU $(uname -m)" ;; esac
  platform="$os-$arch"
  mkdir -p "$TOOLCHAIN/bin" "$TOOLCHAIN/solcx"
  for tool in anvil forge; do
    local binary="$ROOT/node_modules/@foundry-rs/$tool-$platform/bin/$tool"
    [[ -x "$binary" ]] || die "$tool binary for $platform missing from node_modules"
    ln -sfn "$binary" "$TOOLCHAIN/bin/$tool"
  done
  printf '#!/bin/sh\nexec node "%s/toolchain/solc-wasm.cjs" "$@"\n' "$ROOT" > "$TOOLCHAIN/bin/solc"
  chmod +x "$TOOLCHAIN/bin/solc"
  ln -sfn "$TOOLCHAIN/bin/solc" "$TOOLCHAIN/solcx/solc-v$SOLC_VERSION"
}

setup_python() {
  local python hash
  python="$(find_python)" || die "Python 3.10, 3.11 or 3.12 not found (set PYTHON=/path/to/python3)"
  hash="$(inputs_hash requirements.txt constraints.txt device_client/pyproject.toml bridge/pyproject.toml)"
  [[ -x "$VENV/bin/python" ]] || { say "Creating $VENV with $python"; "$python" -m venv "$VENV"; }
  stamp_matches python "$hash" && return 0
  say "Installing Python packages (pinned by constraints.txt)"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt -c constraints.txt
  stamp_write python "$hash"
}

setup() {
  setup_node
  link_toolchain
  setup_python
}

# Our toolchain comes before the venv: slither's solc-select also installs a
# `solc` there, which would try to download compilers.
export PATH="$TOOLCHAIN/bin:$VENV/bin:$PATH"
export SOLCX_BINARY_PATH="$TOOLCHAIN/solcx"
export PYTHONDONTWRITEBYTECODE=1

cmd="${1:-}"
[[ $# -gt 0 ]] && shift
case "$cmd" in
  # `setup` runs as a plain command so that `set -e` stops at its first failure.
  setup) setup ;;
  demo)
    # Each story is its own ape script on its own fresh chain; extra arguments go to the `ape run` of the
    # sales and service stories. The bridge story starts its own two chains and takes none.
    story="${1:-all}"
    case "$story" in
      sales | service | bridge | all) [[ $# -gt 0 ]] && shift ;;
      -*) story=all ;;
      *) die "usage: ./run.sh demo [sales|service|bridge] [ape run options]" ;;
    esac
    [[ "$story" == bridge && $# -gt 0 ]] && die "the bridge story takes no options (it starts its own chains)"
    setup
    if [[ "$story" == all || "$story" == sales ]]; then ape run demo "$@"; fi
    if [[ "$story" == all || "$story" == service ]]; then ape run service_demo "$@"; fi
    if [[ "$story" == all || "$story" == bridge ]]; then ape run bridge_demo; fi
    ;;
  test) setup; exec bash toolchain/test-gates.sh "$@" ;;
  bench) setup; exec bash toolchain/bench.sh "$@" ;;
  *) die "usage: ./run.sh {demo [sales|service|bridge]|test|bench|setup}" ;;
esac
