"""Local chains for trying the bridge: anvil processes with chosen chain ids, and contract deployment with web3.

Used by the bridge's tests, the two-chain demo and the relay benchmarks; an operator never needs it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_typing import ChecksumAddress
from web3 import Web3
from web3.contract import Contract

READY_TIMEOUT_SECONDS = 20.0


class DevnetError(RuntimeError):
    """A local chain could not be started or a contract could not be deployed."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class LocalChain:
    """One anvil process. Its ten default accounts are unlocked and funded."""

    chain_id: int
    port: int
    process: subprocess.Popen[bytes]
    _web3: Web3 | None = field(default=None, repr=False)

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def web3(self) -> Web3:
        if self._web3 is None:
            self._web3 = Web3(Web3.HTTPProvider(self.rpc_url, request_kwargs={"timeout": 30}))
        return self._web3

    @property
    def accounts(self) -> list[ChecksumAddress]:
        return list(self.web3.eth.accounts)

    def stop(self) -> None:
        """Stops anvil (SIGTERM, then SIGKILL after 5 s)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> LocalChain:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def anvil_binary() -> str:
    """The anvil to run: $ANVIL, else `anvil` on PATH (./run.sh puts .toolchain/bin first)."""
    candidate = os.environ.get("ANVIL") or shutil.which("anvil")
    if not candidate:
        raise DevnetError("anvil not found: run ./run.sh setup, or set ANVIL to its path")
    return candidate


def start_anvil(
    chain_id: int,
    *,
    port: int | None = None,
    block_time: float | None = None,
    extra_args: tuple[str, ...] = (),
) -> LocalChain:
    """Starts anvil with `chain_id` on loopback and waits until it answers. `block_time` None: a block per
    transaction (automine)."""
    chosen_port = port or free_port()
    command = [
        anvil_binary(),
        "--chain-id", str(chain_id),
        "--port", str(chosen_port),
        "--host", "127.0.0.1",
        "--hardfork", "shanghai",
        "--silent",
    ]
    if block_time is not None:
        command += ["--block-time", str(block_time)]
    command += list(extra_args)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    chain = LocalChain(chain_id=chain_id, port=chosen_port, process=process)
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stderr = process.stderr.read().decode(errors="replace").strip() if process.stderr else ""
            raise DevnetError(f"anvil for chain {chain_id} exited with {process.returncode}: {stderr[-300:]}")
        try:
            if chain.web3.eth.chain_id == chain_id:
                return chain
        except Exception:  # noqa: BLE001 - not listening yet
            pass
        time.sleep(0.05)
    chain.stop()
    raise DevnetError(f"anvil for chain {chain_id} did not answer on port {chosen_port} within {READY_TIMEOUT_SECONDS:.0f} s")


@dataclass(frozen=True)
class Artifact:
    """A compiled contract: its ABI and deployment bytecode."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str


def load_ape_artifact(name: str, build_folder: Path | str = ".build") -> Artifact:
    """Contract `name` as `ape compile` left it in `<build_folder>/__local__.json`."""
    manifest_path = Path(build_folder) / "__local__.json"
    try:
        contract_types = json.loads(manifest_path.read_text())["contractTypes"]
    except FileNotFoundError as error:
        raise DevnetError(f"{manifest_path} not found: run `ape compile` first") from error
    if name not in contract_types:
        raise DevnetError(f"{name} is not in {manifest_path}: run `ape compile` first")
    contract_type = contract_types[name]
    return Artifact(name=name, abi=contract_type["abi"], bytecode=contract_type["deploymentBytecode"]["bytecode"])


def deploy(web3: Web3, artifact: Artifact, *args: Any, sender: ChecksumAddress | None = None) -> Contract:
    """Deploys `artifact` with constructor `args` from `sender` (default: the node's first account, which
    must be unlocked, as anvil's are) and returns the contract."""
    factory = web3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    deployer = sender or web3.eth.accounts[0]
    tx_hash = factory.constructor(*args).transact({"from": deployer})
    receipt = web3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
    if receipt["status"] != 1 or not receipt["contractAddress"]:
        raise DevnetError(f"deploying {artifact.name} on chain {web3.eth.chain_id} failed")
    return web3.eth.contract(address=receipt["contractAddress"], abi=artifact.abi)
