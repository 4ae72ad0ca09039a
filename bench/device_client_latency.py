"""Device client latency and memory: from process start to the verified pickup result.

    python bench/device_client_latency.py [--runs N] [--json]

Sets up a local chain with a gate device, an admitted seller and a paid order, then
runs `thingledger-device verify` as a fresh process N times (each with a fresh
challenge, issued and signed outside the timed part). Each run is timed from spawn to
exit and its peak resident memory read from the kernel (wait4's ru_maxrss). Targets:
median and 95th percentile under 1.0 s, peak memory under 80 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench"
LATENCY_TARGET_S = 1.0
MEMORY_TARGET_MB = 80.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs of `verify` (5 to 200, default 20)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    args = parser.parse_args()
    if not 5 <= args.runs <= 200:
        parser.error("--runs must be between 5 and 200")
    return args


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def measure_child(command: list[str]) -> int:
    """Launcher mode: run `command` with our stdin, print {seconds, peak_rss_mb, exit_code, stdout} as JSON.

    Peak memory is read with os.wait4 (ru_maxrss). Linux carries a process's peak resident size across
    fork and exec, so the client must be started by a small process like this one: started straight from
    the benchmark (which holds Ape, ~170 MB), it would report the benchmark's own peak.
    """
    stdin = sys.stdin.read()
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(stdin)
    process.stdin.close()
    stdout = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    print(json.dumps({
        "seconds": elapsed, "peak_rss_mb": usage.ru_maxrss / 1024,
        "exit_code": process.returncode, "stdout": stdout,
    }))
    return 0


def run_measured(command: list[str], stdin: str, env: dict[str, str]) -> tuple[float, float, int, str]:
    """Runs `command` through the launcher mode: (seconds from spawn to exit, peak RSS in MB, exit code, stdout)."""
    launcher = [sys.executable, str(Path(__file__).resolve()), "--measure-child", "--", *command]
    result = subprocess.run(launcher, input=stdin, capture_output=True, text=True, env=env, check=True)
    measured = json.loads(result.stdout)
    return measured["seconds"], measured["peak_rss_mb"], measured["exit_code"], measured["stdout"]


def main() -> int:
    args = parse_args()
    os.environ.setdefault("SOLCX_BINARY_PATH", str(ROOT / ".toolchain" / "solcx"))
    os.chdir(ROOT)
    from ape import accounts, chain, networks, project
    from eth_account import Account
    from thingledger_device import typed_data

    with networks.parse_network_choice("ethereum:local:foundry"), tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        admin, manufacturer, operator, seller, buyer = accounts.test_accounts[:5]
        registry = admin.deploy(project.DeviceRegistry, admin.address)
        sales_order = admin.deploy(project.SalesOrder, registry.address, admin.address)
        registry.grantRole(registry.MANUFACTURER_ROLE(), manufacturer, sender=admin)

        gate = Account.create()
        (folder / "gate.json").write_text(
            json.dumps(Account.encrypt(gate.key, PASSWORD, kdf="scrypt", iterations=2**14))
        )
        now = chain.pending_timestamp
        record = {
            "model": "GateController-2", "serial": "GC2-BENCH", "firmwareHash": b"\xab" * 32,
            "manufacturedAt": now, "warrantyEnd": now + 10**8, "metadataURI": "ipfs://bench",
        }
        message = typed_data.provision_message(
            chain.chain_id, registry.address, gate.address, manufacturer.address, record, now + 3600
        )
        signature = Account.sign_typed_data(gate.key, full_message=message).signature
        registry.provision(gate.address, typed_data.record_tuple(record), now + 3600, signature, sender=manufacturer)
        gate_id = int(gate.address, 16)
        registry.transferFrom(manufacturer, operator, gate_id, sender=manufacturer)
        registry.activate(gate_id, sender=operator)
        registry.grantPermissions(gate_id, seller, 4, now + 10**7, sender=operator)
        sales_order.createOrder(("Acme", "ColdBox-7", 2026, "CB7-1"), 10**15, 0, 0, sender=seller)
        sales_order.buy(1, value=10**15, sender=buyer)

        deployment = folder / "deployment.json"
        deployment.write_text(json.dumps({
            "chainId": chain.chain_id, "network": "ethereum:local:foundry", "deployer": admin.address,
            "contracts": {
                "DeviceRegistry": {"address": registry.address, "block": 1},
                "SalesOrder": {"address": sales_order.address, "block": 2},
            },
        }))
        receipt_uri = (
            f"thingledger://receipt?v=1&chain={chain.chain_id}&contract={sales_order.address}"
            f"&order=1&buyer={buyer.address}"
        )
        client = [sys.executable, "-m", "thingledger_device"]
        common = [
            "--deployment", str(deployment), "--rpc", chain.provider.http_uri,
            "--keystore", str(folder / "gate.json"), "--state-dir", str(folder / "state"), "--json",
        ]
        env = {**os.environ, "THINGLEDGER_KEYSTORE_PASSWORD": PASSWORD}

        seconds: list[float] = []
        peaks: list[float] = []
        for _ in range(args.runs):
            issued = subprocess.run(
                [*client, "challenge", "--receipt", receipt_uri, *common],
                capture_output=True, text=True, env=env, check=True,
            )
            challenge = json.loads(issued.stdout)
            challenge_message = typed_data.pickup_challenge_message(
                challenge["chainId"], challenge["salesOrder"], challenge["orderId"], challenge["gateId"],
                bytes.fromhex(challenge["challenge"].removeprefix("0x")), challenge["expiresAt"],
            )
            answer = Account.sign_typed_data(buyer.private_key, full_message=challenge_message).signature
            response = json.dumps({"challenge": challenge, "signature": "0x" + answer.hex().removeprefix("0x")})
            elapsed, peak, code, stdout = run_measured(
                [*client, "verify", "--receipt", receipt_uri, "--response", "-", *common], response, env
            )
            if code != 0:
                print(f"error: verify failed (exit {code}): {stdout.strip()}", file=sys.stderr)
                return 1
            seconds.append(elapsed)
            peaks.append(peak)

    figures: dict[str, Any] = {
        "runs": args.runs,
        "median_s": round(statistics.median(seconds), 3),
        "p95_s": round(percentile(seconds, 0.95), 3),
        "min_s": round(min(seconds), 3),
        "peak_rss_mb": round(max(peaks), 1),
        "median_rss_mb": round(statistics.median(peaks), 1),
        "targets": {
            "latency_p95_under_s": LATENCY_TARGET_S,
            "memory_under_mb": MEMORY_TARGET_MB,
            "latency_pass": percentile(seconds, 0.95) < LATENCY_TARGET_S,
            "memory_pass": max(peaks) < MEMORY_TARGET_MB,
        },
    }
    if args.json:
        print(json.dumps(figures))
        return 0

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"device client: process start -> verified pickup ({args.runs} runs)")
    for column in ("figure", "value", "target", "result"):
        table.add_column(column)
    verdict = {True: "PASS", False: "MISS"}
    table.add_row("median", f"{figures['median_s']:.3f} s", f"< {LATENCY_TARGET_S} s",
                  verdict[figures["median_s"] < LATENCY_TARGET_S])
    table.add_row("95th percentile", f"{figures['p95_s']:.3f} s", f"< {LATENCY_TARGET_S} s",
                  verdict[figures["targets"]["latency_pass"]])
    table.add_row("peak RSS (max of runs)", f"{figures['peak_rss_mb']:.1f} MB", f"< {MEMORY_TARGET_MB:.0f} MB",
                  verdict[figures["targets"]["memory_pass"]])
    table.add_row("median peak RSS", f"{figures['median_rss_mb']:.1f} MB", "", "")
    Console().print(table)
    return 0


if __name__ == "__main__":
    try:
        if sys.argv[1:2] == ["--measure-child"]:
            sys.exit(measure_child(sys.argv[3:]))
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
