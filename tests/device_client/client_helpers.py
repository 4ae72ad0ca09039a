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


def write_deployment(
    path: Path, *, chain_id: int, registry: str, sales_order: str, deployer: str, network: str = "ethereum:local"
) -> Path:
    """Writes a deployment file the way the deploy script does."""
    path.write_text(
        json.dumps(
            {
                "chainId": chain_id,
                "network": network,
                "deployer": deployer,
                "contracts": {
                    "DeviceRegistry": {"address": registry, "block": 1},
                    "SalesOrder": {"address": sales_order, "block": 2},
                },
            },
            indent=2,
        )
    )
    return path


REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
SALES_ORDER = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
DEPLOYER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
