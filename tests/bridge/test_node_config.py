"""The node's TOML configuration: a valid file loads with its defaults and paths resolved against its folder;
every mistake is a one-line error naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from thingledger_bridge.config import load_config
from thingledger_bridge.errors import BridgeError

RELAY_A = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
RELAY_B = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"

CHAINS = f"""
[[chains]]
name = "public"
chain_id = 1001
rpc_url = "http://127.0.0.1:8701"
relay = "{RELAY_A.lower()}"

[[chains]]
name = "owner"
chain_id = 1002
rpc_url = "http://127.0.0.1:8702"
relay = "{RELAY_B}"
confirmations = 0
finality = "finalized"
start_block = 5
poll_interval = 0.25
max_block_range = 100
"""

VALID = f"""
signature_store = "state/signatures"
{CHAINS}
[validator]
keystore = "keys/validator-1.json"
password_file = "keys/password.txt"
database = "state/validator-1.sqlite"

[relayer]
private_key_env = "RELAYER_KEY"
database = "state/relayer.sqlite"
max_attempts = 3
backoff_initial = 0.5
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def test_a_valid_file_loads_with_defaults_and_resolved_paths(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID))
    assert config.signature_store == (tmp_path / "state/signatures").resolve()
    public, owner = config.chains
    assert (public.name, public.chain_id, public.relay) == ("public", 1001, RELAY_A)  # checksummed
    assert (public.confirmations, public.finality, public.start_block) == (2, "depth", 0)
    assert (public.poll_interval, public.max_block_range) == (1.0, 2000)
    assert (owner.confirmations, owner.finality, owner.start_block) == (0, "finalized", 5)
    assert (owner.poll_interval, owner.max_block_range) == (0.25, 100)
    assert config.validator is not None
    assert config.validator.key.keystore == (tmp_path / "keys/validator-1.json").resolve()
    assert config.validator.key.password_file == (tmp_path / "keys/password.txt").resolve()
    assert config.relayer is not None
    assert config.relayer.key.private_key_env == "RELAYER_KEY"
    assert (config.relayer.max_attempts, config.relayer.backoff_initial) == (3, 0.5)
    assert (config.relayer.backoff_max, config.relayer.receipt_timeout) == (300.0, 60.0)
    assert config.chain(1002) is owner and config.chain(7) is None


def test_sections_are_optional_until_a_command_needs_them(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, f'signature_store = "s"\n{CHAINS}'))
    with pytest.raises(BridgeError, match=r"no \[validator\] section"):
        config.require_validator()
    with pytest.raises(BridgeError, match=r"no \[relayer\] section"):
        config.require_relayer()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda t: t.replace('signature_store = "state/signatures"', ""), r"signature_store: missing"),
        (
            lambda t: t.replace("chain_id = 1002", "chain_id = 1001"),
            r"chains\[1\]\.chain_id: chain id 1001 is configured twice",
        ),
        (lambda t: t.replace('name = "owner"', 'name = "public"'), r"chains\[1\]\.name: name 'public' is used twice"),
        (
            lambda t: t.replace('rpc_url = "http://127.0.0.1:8701"', 'rpc_url = "ws://x"'),
            r"chains\[0\]\.rpc_url: expected an http",
        ),
        (lambda t: t.replace(f'relay = "{RELAY_B}"', 'relay = "0x1234"'), r"chains\[1\]\.relay: not an address"),
        (
            lambda t: t.replace("confirmations = 0", "confirmations = -1"),
            r"chains\[1\]\.confirmations: must be at least 0",
        ),
        (
            lambda t: t.replace("confirmations = 0", 'confirmations = "2"'),
            r"chains\[1\]\.confirmations: expected a whole number",
        ),
        (
            lambda t: t.replace('finality = "finalized"', 'finality = "safe"'),
            r"chains\[1\]\.finality: expected one of depth, finalized",
        ),
        (
            lambda t: t.replace("poll_interval = 0.25", "poll_interval = 0"),
            r"chains\[1\]\.poll_interval: must be above",
        ),
        (
            lambda t: t.replace("max_block_range = 100", "max_block_range = 0"),
            r"chains\[1\]\.max_block_range: must be at least 1",
        ),
        (lambda t: t.replace("start_block = 5", "start_blok = 5"), r"chains\[1\]\.start_blok: unknown key"),
        (lambda t: t.replace('keystore = "keys/validator-1.json"\n', ""), r"validator\.keystore: missing"),
        (
            lambda t: t.replace('keystore = "keys/validator-1.json"', 'private_key_env = "V"'),
            r"validator\.password_file: only meaningful with keystore",
        ),
        (lambda t: t.replace('private_key_env = "RELAYER_KEY"', ""), r"relayer\.keystore: missing"),
        (
            lambda t: t.replace('private_key_env = "RELAYER_KEY"', 'private_key_env = "K"\nkeystore = "k.json"'),
            r"relayer\.private_key_env: set either",
        ),
        (lambda t: t.replace("max_attempts = 3", "max_attempts = 0"), r"relayer\.max_attempts: must be at least 1"),
        (
            lambda t: t.replace("backoff_initial = 0.5", "backoff_initial = 500.0"),
            r"relayer\.backoff_max: must be at least backoff_initial",
        ),
        (lambda t: t.replace('database = "state/relayer.sqlite"', ""), r"relayer\.database: missing"),
        (lambda t: t + "\nextra = 1\n", r"relayer\.extra: unknown key"),
    ],
)
def test_mistakes_are_one_line_errors_naming_file_and_key(tmp_path: Path, change, expected: str) -> None:
    path = write(tmp_path, change(VALID))
    with pytest.raises(BridgeError, match=expected) as caught:
        load_config(path)
    assert caught.value.message.startswith(f"{path}: ")
    assert "\n" not in caught.value.message


def test_one_chain_is_not_enough(tmp_path: Path) -> None:
    text = VALID[: VALID.index("[[chains]]", VALID.index("[[chains]]") + 1)] + VALID[VALID.index("[validator]") :]
    with pytest.raises(BridgeError, match=r"chains: at least two \[\[chains\]\] are needed, found 1"):
        load_config(write(tmp_path, text))


def test_unreadable_files_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(BridgeError, match="configuration file not found"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(BridgeError, match="not valid TOML"):
        load_config(write(tmp_path, "signature_store = \n"))
