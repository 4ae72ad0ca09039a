#!/usr/bin/env bash
# Every benchmark; each prints its figures. Called by `./run.sh bench` (which sets PATH and installs first).
# Extra arguments (for example --json) go to each benchmark.
set -euo pipefail
for benchmark in bench/gas_foundation.py bench/gas_market_matching.py bench/gas_relay.py \
  bench/device_client_latency.py bench/relayer_throughput.py; do
  printf '\n\033[1m==> %s\033[0m\n' "$benchmark"
  python "$benchmark" "$@"
done
