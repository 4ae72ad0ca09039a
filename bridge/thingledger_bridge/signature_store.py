"""The signature store: a folder that validators write into and relayers read from.

Layout: `<store>/<validator address, checksummed>/<message id, 0x + lowercase hex>.json`, each written
atomically (temporary file, fsync, rename, fsync of the folder). Content:
`{"id", "validator", "signature" (65 bytes r‖s‖v as 0x + 130 hex), "digest", "dst_chain_id", "dst_relay"}`.

Readers trust nothing in a file: `read_signature` recovers the signer from the digest the caller computed and
returns the signature only when that signer is the folder's validator and s is low.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_keys import keys
from eth_utils import to_checksum_address

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@dataclass(frozen=True)
class SignatureRecord:
    id: str
    validator: str
    signature: bytes
    digest: bytes
    dst_chain_id: int
    dst_relay: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "validator": self.validator,
            "signature": "0x" + self.signature.hex(),
            "digest": "0x" + self.digest.hex(),
            "dst_chain_id": self.dst_chain_id,
            "dst_relay": self.dst_relay,
        }


def signature_path(store: Path, validator: str, message_id: str) -> Path:
    return store / to_checksum_address(validator) / f"{message_id.lower()}.json"


def sign_digest(account: LocalAccount, digest: bytes) -> bytes:
    """65-byte r‖s‖v (v 27/28, low s) signature of a 32-byte digest."""
    signed = Account.unsafe_sign_hash(digest, account.key)  # the digest is EIP-712, computed by us
    r, s, v = int(signed.r), int(signed.s), int(signed.v)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v])


def recover_signer(digest: bytes, signature: bytes) -> str | None:
    """The signer of `digest`, or None for a malformed or high-s signature (the relay refuses those)."""
    if len(signature) != 65 or signature[64] not in (27, 28):
        return None
    s = int.from_bytes(signature[32:64], "big")
    if s == 0 or s > SECP256K1_N // 2:
        return None
    r = int.from_bytes(signature[:32], "big")
    try:
        public_key = keys.Signature(vrs=(signature[64] - 27, r, s)).recover_public_key_from_msg_hash(digest)
    except Exception:  # noqa: BLE001 - r or s out of range, or no point: not a signature
        return None
    return to_checksum_address(public_key.to_checksum_address())


def write_signature(store: Path, record: SignatureRecord) -> Path:
    """Writes `record` atomically: a reader sees either no file or the whole file."""
    target = _write_file(store, record)
    _fsync_folder(target.parent)
    return target


def write_signatures(
    store: Path, records: list[SignatureRecord], before_each: Callable[[], None] | None = None
) -> list[Path]:
    """Writes several records one after another, each atomically (its data fsynced before its rename), then
    fsyncs each folder once: when it returns, every file is durable. `before_each` runs before each write (the
    crash tests' failpoint: at its n-th call the n-1 files before it are in place)."""
    paths = []
    for record in records:
        if before_each is not None:
            before_each()
        paths.append(_write_file(store, record))
    for folder in sorted({path.parent for path in paths}):
        _fsync_folder(folder)
    return paths


def _write_file(store: Path, record: SignatureRecord) -> Path:
    """Writes `record` to a temporary file, fsyncs it and renames it into place (the folder not fsynced)."""
    target = signature_path(store, record.validator, record.id)
    folder = target.parent
    folder.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=folder)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            json.dump(record.to_json(), stream, sort_keys=True)
            stream.write("\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    return target


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def read_signature(store: Path, validator: str, message_id: str, digest: bytes) -> bytes | None:
    """The signature of `digest` by `validator` for message `message_id`, if its file exists and holds a
    valid low-s signature BY that validator of exactly that digest; anything else (missing, unreadable,
    tampered, another signer) is None."""
    path = signature_path(store, validator, message_id)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict):
        return None
    text = document.get("signature")
    if not isinstance(text, str) or not text.startswith("0x") or len(text) != 132:
        return None
    try:
        signature = bytes.fromhex(text[2:])
    except ValueError:
        return None
    if recover_signer(digest, signature) != to_checksum_address(validator):
        return None
    return signature
