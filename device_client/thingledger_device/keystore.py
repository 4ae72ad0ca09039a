"""Encrypted key files (Web3 Secret Storage v3, scrypt) and where their passwords come from."""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DeviceClientError
from .values import parse_address, parse_json, read_text_file

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

# scrypt with n = 2**14 (instead of eth-account's 2**18) decrypts in well under a second on a Raspberry Pi.
SCRYPT_N = 2**14
KEYSTORE_MODE = 0o600
PASSWORD_ENV = "THINGLEDGER_KEYSTORE_PASSWORD"


def create_keystore(path: str | Path, password: str) -> str:
    """Generates a new key, writes it encrypted to `path` (mode 0600, never overwriting), returns its address."""
    from eth_account import Account

    if password == "":
        raise DeviceClientError("refusing to encrypt a key with an empty password")
    target = Path(path)
    if target.exists() or target.is_symlink():
        raise DeviceClientError(f"keystore {target} already exists: refusing to overwrite it")
    account = Account.create()
    document = Account.encrypt(account.key, password, kdf="scrypt", iterations=SCRYPT_N)
    text = json.dumps(document) + "\n"
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEYSTORE_MODE)
    except FileExistsError:
        raise DeviceClientError(f"keystore {target} already exists: refusing to overwrite it") from None
    except OSError as error:
        raise DeviceClientError(f"cannot create keystore {target}: {error.strerror or error}") from None
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        os.fchmod(stream.fileno(), KEYSTORE_MODE)
        stream.write(text)
    return str(account.address)


def read_keystore(path: str | Path | None) -> dict[str, Any]:
    """The keystore's JSON document."""
    if path is None or str(path) == "":
        raise DeviceClientError("no keystore: pass --keystore PATH or set THINGLEDGER_KEYSTORE")
    document = parse_json(read_text_file(path, "keystore"), f"keystore {path}")
    if not isinstance(document, dict) or not isinstance(document.get("crypto", document.get("Crypto")), dict):
        raise DeviceClientError(f"keystore {path} is not a JSON key file (no crypto section)")
    return document


def keystore_address(path: str | Path | None) -> str:
    """The address a keystore declares, read without decrypting (unlock checks it against the key)."""
    document = read_keystore(path)
    declared = document.get("address")
    if not isinstance(declared, str):
        raise DeviceClientError(f"keystore {path} does not declare its address")
    return parse_address(declared if declared.startswith("0x") else "0x" + declared, f"keystore {path} address")


def unlock_keystore(path: str | Path | None, password: str) -> LocalAccount:
    """Decrypts a keystore; a wrong password is a DeviceClientError."""
    from eth_account import Account

    document = read_keystore(path)
    try:
        key = Account.decrypt(document, password)
    except ValueError as error:
        if "MAC mismatch" in str(error):
            raise DeviceClientError(f"wrong password for keystore {path}") from None
        raise DeviceClientError(f"cannot decrypt keystore {path}: {error}") from None
    except (KeyError, TypeError) as error:
        raise DeviceClientError(f"keystore {path} is malformed ({error})") from None
    account: LocalAccount = Account.from_key(key)
    declared = document.get("address")
    if isinstance(declared, str) and declared.lower().removeprefix("0x") != account.address.lower()[2:]:
        raise DeviceClientError(f"keystore {path} declares address 0x{declared} but holds the key of {account.address}")
    return account


def resolve_password(
    password_file: str | None, *, env_name: str = PASSWORD_ENV, purpose: str, confirm: bool = False
) -> str:
    """The password from `password_file`, else from the environment variable `env_name`, else typed at a
    terminal prompt (twice if `confirm`); without any of these it is an error."""
    if password_file:
        return read_text_file(password_file, "password file").removesuffix("\n").removesuffix("\r")
    from_env = os.environ.get(env_name)
    if from_env is not None:
        return from_env
    if not sys.stdin.isatty():
        raise DeviceClientError(f"no password for the {purpose}: pass a password file or set {env_name}")
    try:
        password = getpass.getpass(f"Password for the {purpose}: ")
        if confirm and getpass.getpass("Repeat the password: ") != password:
            raise DeviceClientError("the passwords do not match")
    except EOFError:
        raise DeviceClientError(f"no password for the {purpose}") from None
    return password
