#!/usr/bin/env bash
# Every test gate, in order of speed. Called by `./run.sh test` (which sets PATH and installs first).
set -euo pipefail

section() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

section "Compile (ape)"
ape compile

section "Forge fuzz and invariant tests"
forge test

section "Slither: no high or medium finding"
python toolchain/slither_gate.py

section "ape test (contracts, scripts, device client)"
ape test tests/ "$@"
