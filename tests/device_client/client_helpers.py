"""Helpers of the device client tests: running the CLIs as subprocesses and checking their output.

(A module with a unique name, not conftest.py: test modules import it directly.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

PASSWORD = "correct horse battery staple"


def client_env() -> dict[str, str]:
    """The environment of client subprocesses: ours, without any THINGLEDGER_* setting leaking in."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("THINGLEDGER_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run_client(
    *args: str, module: str = "thingledger_device", stdin: str | None = None, python_flags: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Runs `python -m <module> args...` and returns the finished process (text output)."""
    return subprocess.run(
        [sys.executable, *python_flags, "-m", module, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=client_env(),
        timeout=120,
    )


def json_output(process: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The one JSON object a --json command printed (fails with the process output otherwise)."""
    lines = process.stdout.strip().splitlines()
    assert len(lines) == 1, f"expected one JSON line, got stdout={process.stdout!r} stderr={process.stderr!r}"
    document: dict[str, Any] = json.loads(lines[0])
    return document


def assert_refused(process: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """The command failed with exit code 1 and one `error: ...` line containing every fragment."""
    assert process.returncode == 1, f"exit {process.returncode}: stdout={process.stdout!r} stderr={process.stderr!r}"
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), process.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def abi_event(name: str) -> dict[str, Any]:
    """ServiceMarket's event `name` in the shipped ABI."""
    from thingledger_device.contracts import load_abi

    return next(entry for entry in load_abi("ServiceMarket") if entry["type"] == "event" and entry["name"] == name)


def make_log(
    name: str,
    values: dict[str, Any],
    *,
    block: int = 7,
    index: int = 0,
    tx_hash: bytes = b"\x77" * 32,
    hex_strings: bool = False,
) -> dict[str, Any]:
    """A ServiceMarket log as a node returns it, built from the ABI and `values` by argument name."""
    from eth_abi.abi import encode
    from thingledger_device.market_events import event_topic

    entry = abi_event(name)
    indexed = [spec for spec in entry["inputs"] if spec["indexed"]]
    plain = [spec for spec in entry["inputs"] if not spec["indexed"]]
    topics = [event_topic(name)] + [encode([spec["type"]], [values[spec["name"]]]) for spec in indexed]
    data = encode([spec["type"] for spec in plain], [values[spec["name"]] for spec in plain])
    log: dict[str, Any] = {
        "address": SERVICE_MARKET,
        "topics": topics,
        "data": data,
        "blockNumber": block,
        "logIndex": index,
        "transactionHash": tx_hash,
    }
    if hex_strings:
        log["topics"] = ["0x" + topic.hex() for topic in topics]
        log["data"] = "0x" + data.hex()
        log["transactionHash"] = "0x" + tx_hash.hex()
    return log


def write_deployment(
    path: Path,
    *,
    chain_id: int,
    registry: str,
    sales_order: str,
    deployer: str,
    network: str = "ethereum:local",
    service_market: str | None = None,
) -> Path:
    """Writes a deployment file the way the deploy script does (files written before ServiceMarket existed
    lack it: `service_market` None)."""
    contracts: dict[str, Any] = {
        "DeviceRegistry": {"address": registry, "block": 1},
        "SalesOrder": {"address": sales_order, "block": 2},
    }
    if service_market is not None:
        contracts["ServiceMarket"] = {"address": service_market, "block": 3}
    path.write_text(
        json.dumps({"chainId": chain_id, "network": network, "deployer": deployer, "contracts": contracts}, indent=2)
    )
    return path


REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
SALES_ORDER = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
SERVICE_MARKET = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"
DEPLOYER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
