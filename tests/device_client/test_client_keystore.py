"""Encrypted key files and passwords."""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path

import pytest
from client_helpers import PASSWORD
from eth_account import Account
from thingledger_device.errors import DeviceClientError
from thingledger_device.keystore import (
    SCRYPT_N,
    create_keystore,
    keystore_address,
    resolve_password,
    unlock_keystore,
)


def test_creates_a_0600_scrypt_keystore(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "device.json"
    address = create_keystore(path, PASSWORD)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    document = json.loads(path.read_text())
    assert document["crypto"]["kdf"] == "scrypt" and document["crypto"]["kdfparams"]["n"] == SCRYPT_N == 2**14
    assert Account.from_key(Account.decrypt(document, PASSWORD)).address == address
    assert keystore_address(path) == address
    assert unlock_keystore(path, PASSWORD).address == address


def test_new_keys_differ(tmp_path: Path) -> None:
    assert create_keystore(tmp_path / "a.json", PASSWORD) != create_keystore(tmp_path / "b.json", PASSWORD)


def test_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "device.json"
    create_keystore(path, PASSWORD)
    before = path.read_bytes()
    with pytest.raises(DeviceClientError, match="already exists"):
        create_keystore(path, PASSWORD)
    assert path.read_bytes() == before
    link = tmp_path / "dangling.json"
    link.symlink_to(tmp_path / "nowhere.json")
    with pytest.raises(DeviceClientError, match="already exists"):
        create_keystore(link, PASSWORD)
    assert not (tmp_path / "nowhere.json").exists()


def test_refuses_an_empty_password(tmp_path: Path) -> None:
    with pytest.raises(DeviceClientError, match="empty password"):
        create_keystore(tmp_path / "device.json", "")
    assert not (tmp_path / "device.json").exists()


def test_wrong_password_is_a_client_error(tmp_path: Path) -> None:
    path = tmp_path / "device.json"
    create_keystore(path, PASSWORD)
    with pytest.raises(DeviceClientError, match="wrong password"):
        unlock_keystore(path, PASSWORD + "!")


def test_detects_a_keystore_that_lies_about_its_address(tmp_path: Path) -> None:
    path = tmp_path / "device.json"
    create_keystore(path, PASSWORD)
    document = json.loads(path.read_text())
    document["address"] = "11" * 20
    path.write_text(json.dumps(document))
    with pytest.raises(DeviceClientError, match="holds the key of"):
        unlock_keystore(path, PASSWORD)


@pytest.mark.parametrize("content", ["not json", "[]", '{"address": "00"}', '{"crypto": {}, "address": "xyz"}'])
def test_malformed_keystores_are_client_errors(tmp_path: Path, content: str) -> None:
    path = tmp_path / "device.json"
    path.write_text(content)
    with pytest.raises(DeviceClientError):
        keystore_address(path)
    with pytest.raises(DeviceClientError):
        unlock_keystore(path, PASSWORD)


def test_missing_keystore(tmp_path: Path) -> None:
    with pytest.raises(DeviceClientError, match="cannot read keystore"):
        keystore_address(tmp_path / "absent.json")
    with pytest.raises(DeviceClientError, match="THINGLEDGER_KEYSTORE"):
        keystore_address(None)


def test_password_comes_from_the_file_then_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THINGLEDGER_KEYSTORE_PASSWORD", "from env")
    file = tmp_path / "password"
    file.write_text("from file\r\n")
    assert resolve_password(str(file), purpose="test") == "from file"
    file.write_text("  spaces kept  ")
    assert resolve_password(str(file), purpose="test") == "  spaces kept  "
    assert resolve_password(None, purpose="test") == "from env"
    with pytest.raises(DeviceClientError, match="cannot read password file"):
        resolve_password(str(tmp_path / "absent"), purpose="test")


def test_without_a_password_source_or_terminal_it_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("THINGLEDGER_KEYSTORE_PASSWORD", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO("secret\n"))
    with pytest.raises(DeviceClientError, match="no password for the device keystore"):
        resolve_password(None, purpose="device keystore")


def test_prompts_at_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    answers = iter(["typed", "typed", "typed", "mistyped"])
    monkeypatch.delenv("THINGLEDGER_KEYSTORE_PASSWORD", raising=False)
    monkeypatch.setattr("sys.stdin", Terminal())
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))
    assert resolve_password(None, purpose="test", confirm=True) == "typed"
    with pytest.raises(DeviceClientError, match="do not match"):
        resolve_password(None, purpose="test", confirm=True)
