"""Signing keys: an eth-account keystore with its password from a file or $THINGLEDGER_BRIDGE_PASSWORD, or a
hex key in an environment variable; every problem is a one-line error naming the section."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bridge_helpers import fixed_key
from eth_account import Account
from thingledger_bridge.config import KeySource
from thingledger_bridge.errors import BridgeError
from thingledger_bridge.keys import PASSWORD_ENV, load_account

ACCOUNT = fixed_key("keystore")


@pytest.fixture()
def keystore(tmp_path: Path) -> Path:
    path = tmp_path / "validator.json"
    path.write_text(json.dumps(Account.encrypt(ACCOUNT.key, "correct horse", kdf="scrypt", iterations=2**10)))
    return path


def test_a_keystore_unlocks_with_its_password_file(keystore: Path, tmp_path: Path) -> None:
    password = tmp_path / "password.txt"
    password.write_text("correct horse\n")  # a trailing newline is not part of the password
    assert load_account(KeySource(keystore, password, None), "validator").address == ACCOUNT.address


def test_a_keystore_unlocks_with_the_password_variable(keystore: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "correct horse")
    assert load_account(KeySource(keystore, None, None), "relayer").address == ACCOUNT.address


def test_keystore_problems_are_one_line_errors(keystore: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("battery staple")
    with pytest.raises(BridgeError, match=r"^\[validator\] keystore: wrong password for"):
        load_account(KeySource(keystore, wrong, None), "validator")
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with pytest.raises(BridgeError, match=rf"set password_file or \${PASSWORD_ENV}"):
        load_account(KeySource(keystore, None, None), "validator")
    with pytest.raises(BridgeError, match="not found"):
        load_account(KeySource(tmp_path / "absent.json", wrong, None), "validator")
    with pytest.raises(BridgeError, match="cannot read password_file|password_file: cannot read"):
        load_account(KeySource(keystore, tmp_path / "absent.txt", None), "validator")
    garbage = tmp_path / "garbage.json"
    garbage.write_text('{"version": 3}')
    with pytest.raises(BridgeError, match=r"^\[relayer\] keystore: "):
        load_account(KeySource(garbage, wrong, None), "relayer")


def test_a_key_in_an_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_TEST_KEY", "0x" + bytes(ACCOUNT.key).hex())
    assert load_account(KeySource(None, None, "BRIDGE_TEST_KEY"), "relayer").address == ACCOUNT.address
    monkeypatch.setenv("BRIDGE_TEST_KEY", "not a key")
    with pytest.raises(BridgeError, match="BRIDGE_TEST_KEY does not hold a 32-byte hex private key"):
        load_account(KeySource(None, None, "BRIDGE_TEST_KEY"), "relayer")
    monkeypatch.delenv("BRIDGE_TEST_KEY")
    with pytest.raises(BridgeError, match="environment variable BRIDGE_TEST_KEY is not set"):
        load_account(KeySource(None, None, "BRIDGE_TEST_KEY"), "relayer")
