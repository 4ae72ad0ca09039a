"""The node's TOML configuration (one file per process): chains, the signature store, and the validator's
and the relayer's sections. Every problem is a one-line BridgeError naming the file and the key.

Relative paths resolve against the folder of the configuration file.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_utils import is_address, to_checksum_address

from .errors import BridgeError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

FINALITY_MODES = ("depth", "finalized")


@dataclass(frozen=True)
class ChainConfig:
    """A chain the process watches (as a source) or delivers to (as a destination)."""

    name: str
    chain_id: int
    rpc_url: str
    relay: str
    confirmations: int = 2
    finality: str = "depth"
    start_block: int = 0
    poll_interval: float = 1.0
    max_block_range: int = 2000


@dataclass(frozen=True)
class KeySource:
    """Where a signing key comes from: an eth-account keystore (and its password) or an environment variable."""

    keystore: Path | None
    password_file: Path | None
    private_key_env: str | None


@dataclass(frozen=True)
class ValidatorConfig:
    key: KeySource
    database: Path


@dataclass(frozen=True)
class RelayerConfig:
    key: KeySource
    database: Path
    max_attempts: int = 8
    backoff_initial: float = 1.0
    backoff_max: float = 300.0
    receipt_timeout: float = 60.0


@dataclass(frozen=True)
class Config:
    path: Path
    signature_store: Path
    chains: tuple[ChainConfig, ...]
    validator: ValidatorConfig | None
    relayer: RelayerConfig | None

    def chain(self, chain_id: int) -> ChainConfig | None:
        """The configured chain with id `chain_id`, or None."""
        for chain in self.chains:
            if chain.chain_id == chain_id:
                return chain
        return None

    def require_validator(self) -> ValidatorConfig:
        if self.validator is None:
            raise BridgeError(f"{self.path}: no [validator] section (the validator command needs it)")
        return self.validator

    def require_relayer(self) -> RelayerConfig:
        if self.relayer is None:
            raise BridgeError(f"{self.path}: no [relayer] section (this command needs it)")
        return self.relayer


class _Section:
    """Typed reads of one TOML table; every error names the file and the key's full path."""

    def __init__(self, path: Path, prefix: str, table: Any) -> None:
        self.path = path
        self.prefix = prefix
        if not isinstance(table, dict):
            raise self.error("", "expected a table")
        self.table: dict[str, Any] = table

    def key_name(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix and key else (self.prefix or key)

    def error(self, key: str, problem: str) -> BridgeError:
        return BridgeError(f"{self.path}: {self.key_name(key)}: {problem}")

    def check_keys(self, allowed: set[str]) -> None:
        for key in self.table:
            if key not in allowed:
                raise self.error(key, f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def has(self, key: str) -> bool:
        return key in self.table

    def string(self, key: str, default: str | None = None) -> str:
        value = self.table.get(key, default)
        if value is None:
            raise self.error(key, "missing")
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, "expected a non-empty string")
        return value.strip()

    def optional_string(self, key: str) -> str | None:
        return self.string(key) if key in self.table else None

    def integer(self, key: str, default: int | None = None, minimum: int = 0) -> int:
        value = self.table.get(key, default)
        if value is None:
            raise self.error(key, "missing")
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected a whole number, got {value!r}")
        if value < minimum:
            raise self.error(key, f"must be at least {minimum}, got {value}")
        return value

    def number(self, key: str, default: float, minimum: float = 0.0, positive: bool = False) -> float:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.error(key, f"expected a number, got {value!r}")
        if value < minimum or (positive and value <= 0):
            raise self.error(key, f"must be {'above' if positive else 'at least'} {minimum}, got {value}")
        return float(value)

    def path_value(self, key: str, base: Path) -> Path:
        return (base / self.string(key)).resolve()

    def optional_path(self, key: str, base: Path) -> Path | None:
        return self.path_value(key, base) if key in self.table else None


def load_config(path: str | Path) -> Config:
    """Reads and validates the configuration file at `path`."""
    file_path = Path(path)
    try:
        text = file_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BridgeError(f"{file_path}: configuration file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise BridgeError(f"{file_path}: cannot read the configuration file ({error})") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise BridgeError(f"{file_path}: not valid TOML ({error})") from None
    return parse_config(document, file_path)


def parse_config(document: dict[str, Any], file_path: Path) -> Config:
    """Validates an already parsed TOML document read from `file_path`."""
    base = file_path.resolve().parent
    root = _Section(file_path, "", document)
    root.check_keys({"signature_store", "chains", "validator", "relayer"})
    signature_store = root.path_value("signature_store", base)
    raw_chains = document.get("chains")
    if not isinstance(raw_chains, list):
        raise root.error("chains", "missing: add at least two [[chains]] tables")
    chains = tuple(_parse_chain(_Section(file_path, f"chains[{index}]", raw)) for index, raw in enumerate(raw_chains))
    if len(chains) < 2:
        raise root.error("chains", f"at least two [[chains]] are needed, found {len(chains)}")
    for index, chain in enumerate(chains):
        for earlier in chains[:index]:
            if earlier.chain_id == chain.chain_id:
                raise root.error(f"chains[{index}].chain_id", f"chain id {chain.chain_id} is configured twice")
            if earlier.name == chain.name:
                raise root.error(f"chains[{index}].name", f"name {chain.name!r} is used twice")
    validator = None
    if "validator" in document:
        section = _Section(file_path, "validator", document["validator"])
        section.check_keys({"keystore", "password_file", "private_key_env", "database"})
        validator = ValidatorConfig(key=_parse_key(section, base), database=section.path_value("database", base))
    relayer = None
    if "relayer" in document:
        section = _Section(file_path, "relayer", document["relayer"])
        section.check_keys(
            {
                "keystore",
                "password_file",
                "private_key_env",
                "database",
                "max_attempts",
                "backoff_initial",
                "backoff_max",
                "receipt_timeout",
            }
        )
        backoff_initial = section.number("backoff_initial", 1.0, positive=True)
        backoff_max = section.number("backoff_max", 300.0, positive=True)
        if backoff_max < backoff_initial:
            raise section.error(
                "backoff_max", f"must be at least backoff_initial ({backoff_initial}), got {backoff_max}"
            )
        relayer = RelayerConfig(
            key=_parse_key(section, base),
            database=section.path_value("database", base),
            max_attempts=section.integer("max_attempts", 8, minimum=1),
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            receipt_timeout=section.number("receipt_timeout", 60.0, positive=True),
        )
    return Config(path=file_path, signature_store=signature_store, chains=chains, validator=validator, relayer=relayer)


def _parse_chain(section: _Section) -> ChainConfig:
    section.check_keys(
        {
            "name",
            "chain_id",
            "rpc_url",
            "relay",
            "confirmations",
            "finality",
            "start_block",
            "poll_interval",
            "max_block_range",
        }
    )
    rpc_url = section.string("rpc_url")
    if not rpc_url.startswith(("http://", "https://")):
        raise section.error("rpc_url", f"expected an http:// or https:// URL, got {rpc_url!r}")
    relay = section.string("relay")
    if not is_address(relay):
        raise section.error("relay", f"not an address: {relay!r}")
    finality = section.string("finality", "depth")
    if finality not in FINALITY_MODES:
        raise section.error("finality", f"expected one of {', '.join(FINALITY_MODES)}, got {finality!r}")
    return ChainConfig(
        name=section.string("name"),
        chain_id=section.integer("chain_id", minimum=1),
        rpc_url=rpc_url,
        relay=to_checksum_address(relay),
        confirmations=section.integer("confirmations", 2),
        finality=finality,
        start_block=section.integer("start_block", 0),
        poll_interval=section.number("poll_interval", 1.0, positive=True),
        max_block_range=section.integer("max_block_range", 2000, minimum=1),
    )


def _parse_key(section: _Section, base: Path) -> KeySource:
    keystore = section.optional_path("keystore", base)
    password_file = section.optional_path("password_file", base)
    env = section.optional_string("private_key_env")
    if keystore is None and env is None:
        raise section.error("keystore", "missing: set keystore (with password_file) or private_key_env")
    if keystore is not None and env is not None:
        raise section.error("private_key_env", "set either keystore or private_key_env, not both")
    if password_file is not None and keystore is None:
        raise section.error("password_file", "only meaningful with keystore")
    return KeySource(keystore=keystore, password_file=password_file, private_key_env=env)
