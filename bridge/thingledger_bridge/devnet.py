"""Local chains for trying the bridge: anvil processes with chosen chain ids, contract deployment with web3, and
a bridge on them (one configuration and one `thingledger-bridge` process per validator, and a relayer).

Used by the bridge's tests, the two-chain demo and the relay benchmarks; an operator never needs it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

from eth_typing import ChecksumAddress
from web3 import Web3
from web3.contract import Contract

from .relay_abi import RelayAbi

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


# ------------------------------------------------------------------------------------- the node

NODE_COMMAND = (sys.executable, "-m", "thingledger_bridge")
STOP_TIMEOUT_SECONDS = 10.0


class BridgeProcessError(RuntimeError):
    """A node process exited early, or a command of the node failed."""


class ChainSettings(NamedTuple):
    """One [[chains]] entry of the node's configuration."""

    name: str
    chain_id: int
    rpc_url: str
    relay: str
    confirmations: int
    poll_interval: float


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a TOML basic string: JSON escaping is valid TOML for these values


def node_config(chains: Sequence[ChainSettings], role: str, key_env: str, database: str) -> str:
    """The TOML text of a validator's (`role` "validator") or the relayer's ("relayer") configuration; keys
    come from the environment variable `key_env` (local chains only)."""
    lines = ['signature_store = "signatures"', ""]
    for chain in chains:
        lines += ["[[chains]]"]
        lines += [f"{key} = {_toml(value)}" for key, value in chain._asdict().items()]
        lines += [""]
    lines += [f"[{role}]", f"private_key_env = {_toml(key_env)}", f"database = {_toml(database)}"]
    if role == "relayer":  # local chains answer fast: retry sooner than the defaults (1 s, 300 s, 60 s)
        lines += ["backoff_initial = 0.5", "backoff_max = 5.0", "receipt_timeout = 30.0"]
    return "\n".join(lines) + "\n"


class NodeProcess:
    """One `thingledger-bridge` process; its stdout and stderr go to <folder>/<name>.out and .err."""

    def __init__(self, name: str, arguments: Sequence[str], folder: Path, env: dict[str, str]) -> None:
        self.name = name
        self.stdout_path = folder / f"{name}.out"
        self.stderr_path = folder / f"{name}.err"
        self._stdout: IO[bytes] = self.stdout_path.open("wb")
        self._stderr: IO[bytes] = self.stderr_path.open("wb")
        self.process = subprocess.Popen(
            [*NODE_COMMAND, *arguments], stdout=self._stdout, stderr=self._stderr, env=env,
            start_new_session=True,  # Ctrl-C reaches the demo, which stops the nodes itself
        )

    def last_error(self) -> str:
        lines = [line for line in self.stderr_path.read_text(errors="replace").splitlines() if line.strip()]
        return lines[-1].strip() if lines else "(nothing on stderr)"

    def check(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise BridgeProcessError(f"{self.name} exited with status {code}: {self.last_error()}")

    def stop(self) -> None:
        """SIGTERM (the node finishes what it is doing), SIGKILL after STOP_TIMEOUT_SECONDS."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._stdout.close()
        self._stderr.close()


class LocalBridge:
    """Validators (one process per key) and a relayer watching `chains`, with configurations, databases,
    signature store and logs in `folder`. Keys reach the processes through environment variables."""

    def __init__(self, folder: Path, chains: Sequence[ChainSettings], validator_keys: Sequence[str],
                 relayer_key: str) -> None:
        self.folder = Path(folder)
        self.chains = tuple(chains)
        self.validator_keys = tuple(validator_keys)
        self.relayer_key = relayer_key
        self.processes: list[NodeProcess] = []
        self.relayer_config = self.folder / "relayer.toml"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "THINGLEDGER_RELAYER_KEY": self.relayer_key}
        for index, key in enumerate(self.validator_keys, start=1):
            env[f"THINGLEDGER_VALIDATOR_{index}_KEY"] = key
        for index in range(1, len(self.validator_keys) + 1):
            config = self.folder / f"validator-{index}.toml"
            config.write_text(node_config(self.chains, "validator", f"THINGLEDGER_VALIDATOR_{index}_KEY",
                                          f"validator-{index}.sqlite"))
            arguments = ["validator", "--config", str(config), "--json"]
            self.processes.append(NodeProcess(f"validator-{index}", arguments, self.folder, env))
        self.relayer_config.write_text(node_config(self.chains, "relayer", "THINGLEDGER_RELAYER_KEY",
                                                   "relayer.sqlite"))
        self.processes.append(NodeProcess("relayer", ["run", "--config", str(self.relayer_config), "--json"],
                                          self.folder, env))

    def check(self) -> None:
        """Raises BridgeProcessError when a node exited."""
        for process in self.processes:
            process.check()

    def stop(self) -> None:
        for process in self.processes:
            process.stop()

    def events(self, name_prefix: str) -> list[dict[str, Any]]:
        """The JSON events (`--json` lines) the processes whose name starts with `name_prefix` printed so far."""
        found = []
        for process in self.processes:
            if process.name.startswith(name_prefix):
                for line in process.stdout_path.read_text(errors="replace").splitlines():
                    try:
                        event = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if isinstance(event, dict):
                        found.append({**event, "process": process.name})
        return found

    def query(self, command: str, *arguments: str) -> list[Any]:
        """`thingledger-bridge <command> ... --config relayer.toml --json`: its JSON lines, parsed."""
        result = subprocess.run(
            [*NODE_COMMAND, command, *arguments, "--config", str(self.relayer_config), "--json"],
            capture_output=True, text=True, timeout=60,
        )
        if result.returncode != 0:
            lines = result.stderr.strip().splitlines() or ["(nothing on stderr)"]
            raise BridgeProcessError(f"thingledger-bridge {command} exited with {result.returncode}: {lines[-1]}")
        return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]

    def __enter__(self) -> LocalBridge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------- chains


def rpc(web3: Any, method: str, *params: Any) -> Any:
    """A raw JSON-RPC call (anvil's own methods); raises on an error answer."""
    answer = web3.provider.make_request(method, list(params))
    if "error" in answer:
        raise RuntimeError(f"{method}: {answer['error'].get('message', answer['error'])}")
    return answer.get("result")


def wait_until(condition: Callable[[], Any], timeout: float, what: str, *, interval: float = 0.05,
               check: Callable[[], None] | None = None) -> Any:
    """Polls `condition` until it returns something truthy (returned); `check` runs at every poll (it raises
    when a node died). TimeoutError names `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if check is not None:
            check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


def revert_reason(error: Exception, abis: Sequence[list[dict[str, Any]]]) -> str:
    """A web3 revert as one line: the custom error by name and arguments when one of `abis` knows it."""
    data = getattr(error, "data", None)
    if isinstance(data, str) and data.startswith("0x") and len(data) >= 10:
        for abi in abis:
            decoded = RelayAbi(abi).decode_error(bytes.fromhex(data[2:]))
            if decoded is not None:
                return str(decoded)
    return " ".join(str(error).split())
