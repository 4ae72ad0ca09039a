"""Signing keys: an eth-account keystore (password from a file or $THINGLEDGER_BRIDGE_PASSWORD) or, for local
chains only, a hex private key in an environment variable."""

from __future__ import annotations

import json
import os

from eth_account import Account
from eth_account.signers.local import LocalAccount

from .config import KeySource
from .errors import BridgeError

PASSWORD_ENV = "THINGLEDGER_BRIDGE_PASSWORD"


def load_account(source: KeySource, section: str) -> LocalAccount:
    """The account of a [validator] or [relayer] section (`section` names it in errors)."""
    if source.private_key_env is not None:
        value = os.environ.get(source.private_key_env, "").strip()
        if not value:
            raise BridgeError(f"[{section}] private_key_env: environment variable {source.private_key_env} is not set")
        try:
            account: LocalAccount = Account.from_key(value)
            return account
        except Exception:  # noqa: BLE001 - any malformed key
            raise BridgeError(
                f"[{section}] private_key_env: {source.private_key_env} does not hold a 32-byte hex private key"
            ) from None
    assert source.keystore is not None
    try:
        document = json.loads(source.keystore.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BridgeError(f"[{section}] keystore: {source.keystore} not found") from None
    except (OSError, ValueError) as error:
        raise BridgeError(f"[{section}] keystore: cannot read {source.keystore} ({error})") from None
    password = _password(source, section)
    try:
        unlocked: LocalAccount = Account.from_key(Account.decrypt(document, password))
        return unlocked
    except ValueError as error:
        if "MAC mismatch" in str(error):
            raise BridgeError(f"[{section}] keystore: wrong password for {source.keystore}") from None
        raise BridgeError(f"[{section}] keystore: cannot decrypt {source.keystore} ({error})") from None
    except (KeyError, TypeError) as error:
        raise BridgeError(f"[{section}] keystore: {source.keystore} is not an eth-account keystore ({error})") from None


def _password(source: KeySource, section: str) -> str:
    if source.password_file is not None:
        try:
            return source.password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as error:
            raise BridgeError(
                f"[{section}] password_file: cannot read {source.password_file} ({error.strerror})"
            ) from None
    value = os.environ.get(PASSWORD_ENV)
    if value is None:
        raise BridgeError(f"[{section}] keystore {source.keystore}: set password_file or ${PASSWORD_ENV}")
    return value
