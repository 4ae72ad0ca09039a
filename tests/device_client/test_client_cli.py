"""Both CLIs as subprocesses, without a chain: output contracts, one-line errors and exit codes,
commands that must not import web3."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest
from client_helpers import PASSWORD, SALES_ORDER, assert_refused, json_output, run_client
from eth_account import Account
from eth_account.messages import encode_typed_data
from thingledger_device.challenge import Challenge
from thingledger_device.typed_data import pickup_challenge_message, provision_message

BUYER = Account.from_key("0x" + "b1" * 32)
MANUFACTURER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
BUYER_CLI = "thingledger_device.buyer_cli"
RECORD = {
    "model": "GateKeeper Pi 4",
    "serial": "GK-0001",
    "firmwareHash": "0x" + "ab" * 32,
    "manufacturedAt": 1_700_000_000,
    "warrantyEnd": 1_800_000_000,
    "metadataURI": "ipfs://gk-0001",
}


def assert_usage_error(process: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert process.returncode == 2, process
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], process.stderr


def imported_modules(process: subprocess.CompletedProcess[str]) -> set[str]:
    return {line.rsplit("|", 1)[1].strip() for line in process.stderr.splitlines() if line.startswith("import time:")}


@pytest.fixture
def device_keystore(tmp_path: Path, password_file: Path) -> tuple[Path, str]:
    path = tmp_path / "device.json"
    made = run_client("keygen", "--keystore", str(path), "--password-file", str(password_file))
    assert made.returncode == 0, made.stderr
    return path, made.stdout.strip()


def test_keygen_prints_the_address_and_never_overwrites(device_keystore: tuple[Path, str], password_file: Path) -> None:
    path, address = device_keystore
    assert Account.from_key(Account.decrypt(json.loads(path.read_text()), PASSWORD)).address == address
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = run_client("keygen", "--keystore", str(path), "--password-file", str(password_file))
    assert_refused(again, "already exists")
    shown = run_client("address", "--keystore", str(path), "--json")
    assert json_output(shown) == {"address": address}


def test_keygen_without_a_password_source_fails(tmp_path: Path) -> None:
    refused = run_client("keygen", "--keystore", str(tmp_path / "k.json"), stdin="")
    assert_refused(refused, "no password", "THINGLEDGER_KEYSTORE_PASSWORD")
    assert not (tmp_path / "k.json").exists()


def test_sign_provisioning_signs_the_registry_message(
    tmp_path: Path, device_keystore: tuple[Path, str], password_file: Path, deployment_file: Path
) -> None:
    path, address = device_keystore
    record_file = tmp_path / "record.json"
    record_file.write_text(json.dumps(RECORD))
    common = ["--keystore", str(path), "--password-file", str(password_file), "--deployment", str(deployment_file)]
    signed = run_client(
        "sign-provisioning", *common, "--manufacturer", MANUFACTURER.lower(), "--record", str(record_file)
    )
    assert signed.returncode == 0, signed.stderr
    payload = json_output(signed)
    assert set(payload) == {"key", "manufacturer", "record", "deadline", "signature"}
    assert payload["key"] == address and payload["manufacturer"] == MANUFACTURER and payload["record"] == RECORD
    assert abs(payload["deadline"] - (time.time() + 3600)) < 60
    record = {**RECORD, "firmwareHash": bytes.fromhex(RECORD["firmwareHash"][2:])}  # type: ignore[index]
    message = provision_message(
        31337,
        json.loads(deployment_file.read_text())["contracts"]["DeviceRegistry"]["address"],
        address,
        MANUFACTURER,
        record,
        payload["deadline"],
    )
    assert Account.recover_message(encode_typed_data(full_message=message), signature=payload["signature"]) == address

    fixed = run_client(
        "sign-provisioning",
        *common,
        "--manufacturer",
        MANUFACTURER,
        "--record",
        str(record_file),
        "--deadline",
        "123",
        "--json",
    )
    assert json_output(fixed)["deadline"] == 123

    record_file.write_text(json.dumps({**RECORD, "warrantyEnd": 2**32}))
    assert_refused(
        run_client("sign-provisioning", *common, "--manufacturer", MANUFACTURER, "--record", str(record_file)),
        "warrantyEnd",
        "out of range",
    )
    wrong = tmp_path / "wrong-password"
    wrong.write_text("nope")
    record_file.write_text(json.dumps(RECORD))
    refused = run_client(
        "sign-provisioning",
        *common[:2],
        "--password-file",
        str(wrong),
        *common[4:],
        "--manufacturer",
        MANUFACTURER,
        "--record",
        str(record_file),
    )
    assert_refused(refused, "wrong password")


def test_malformed_receipt_is_one_line_and_exit_1(
    device_keystore: tuple[Path, str], deployment_file: Path, tmp_path: Path
) -> None:
    path, _ = device_keystore
    args = [
        "challenge",
        "--receipt",
        "thingledger://receipt?v=1&chain=31337",
        "--keystore",
        str(path),
        "--deployment",
        str(deployment_file),
        "--state-dir",
        str(tmp_path),
    ]
    line = assert_refused(run_client(*args), "receipt: missing field(s) contract, order, buyer")
    with_json = run_client(*args, "--json")
    assert_refused(with_json)
    assert json_output(with_json) == {"error": line.removeprefix("error: ")}


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ([], "required: SUBCOMMAND"),
        (["teleport"], "invalid choice"),
        (["challenge", "--receipt", "x", "--ttl", "0"], "must be at least 1"),
        (["verify", "--receipt", "x"], "required: --response"),
        (["status", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args: list[str], fragment: str) -> None:
    assert_usage_error(run_client(*args), fragment)
    with_json = run_client(*args, "--json")
    assert with_json.returncode == 2 and "error" in json_output(with_json)


def test_unreachable_rpc_fails_fast_in_one_line(device_keystore: tuple[Path, str], deployment_file: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    refused = run_client(
        "status",
        "--keystore",
        str(device_keystore[0]),
        "--deployment",
        str(deployment_file),
        "--rpc",
        f"http://127.0.0.1:{port}",
    )
    assert_refused(refused, f"RPC http://127.0.0.1:{port} unreachable", "gave up after 4 attempts")
    assert time.monotonic() - started < 8


def test_missing_deployment_is_explained(device_keystore: tuple[Path, str], tmp_path: Path) -> None:
    refused = run_client("status", "--keystore", str(device_keystore[0]), "--deployment", str(tmp_path / "absent.json"))
    assert_refused(refused, "cannot read deployment file")
    assert_refused(run_client("status", "--keystore", str(device_keystore[0])), "no deployment file")


def test_buyer_receipt_prints_the_uri_and_a_qr_code(deployment_file: Path, tmp_path: Path) -> None:
    shown = run_client(
        "receipt",
        "--deployment",
        str(deployment_file),
        "--order",
        "7",
        "--buyer",
        BUYER.address.lower(),
        module=BUYER_CLI,
    )
    assert shown.returncode == 0, shown.stderr
    uri, *qr = shown.stdout.splitlines()
    assert uri == f"thingledger://receipt?v=1&chain=31337&contract={SALES_ORDER}&order=7&buyer={BUYER.address}"
    assert len(qr) > 20 and any("█" in line for line in qr)
    png = tmp_path / "receipt.png"
    written = run_client(
        "receipt",
        "--deployment",
        str(deployment_file),
        "--order",
        "7",
        "--buyer",
        BUYER.address,
        "--png",
        str(png),
        "--json",
        module=BUYER_CLI,
    )
    assert json_output(written) == {"receipt": uri, "png": str(png)}
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize(
    ("buyer", "order", "fragment", "code"),
    [
        ("0x1234", "7", "is not an address", 1),
        (
            BUYER.address.replace("a", "A", 1) if "a" in BUYER.address else BUYER.address.replace("A", "a", 1),
            "7",
            "EIP-55",
            1,
        ),
        (BUYER.address, "-1", "must be at least 1", 2),
        (BUYER.address, "seven", "is not an integer", 2),
    ],
)
def test_buyer_receipt_rejects_bad_input(
    deployment_file: Path, buyer: str, order: str, fragment: str, code: int
) -> None:
    refused = run_client(
        "receipt", "--deployment", str(deployment_file), "--order", order, "--buyer", buyer, module=BUYER_CLI
    )
    assert refused.returncode == code and fragment in refused.stderr and len(refused.stderr.strip().splitlines()) == 1


def test_buyer_signs_a_challenge(tmp_path: Path, password_file: Path) -> None:
    keystore = tmp_path / "buyer.json"
    keystore.write_text(json.dumps(Account.encrypt(BUYER.key, PASSWORD, kdf="scrypt", iterations=2**14)))

    def sign_challenge_expiring_at(expires_at: int) -> subprocess.CompletedProcess[str]:
        challenge = Challenge(31337, SALES_ORDER, 7, 99, b"\x05" * 32, expires_at)
        return run_client(
            "sign-challenge", "--keystore", str(keystore), "--password-file", str(password_file),
            "--challenge", "-", stdin=json.dumps(challenge.to_json()), module=BUYER_CLI,
        )  # fmt: skip

    expires_at = int(time.time()) + 120
    signed = sign_challenge_expiring_at(expires_at)
    assert signed.returncode == 0, signed.stderr
    response = json_output(signed)
    assert response["challenge"] == Challenge(31337, SALES_ORDER, 7, 99, b"\x05" * 32, expires_at).to_json()
    message = pickup_challenge_message(31337, SALES_ORDER, 7, 99, b"\x05" * 32, expires_at)
    assert (
        Account.recover_message(encode_typed_data(full_message=message), signature=response["signature"])
        == BUYER.address
    )

    assert_refused(sign_challenge_expiring_at(int(time.time()) - 1), "the challenge expired")
    # Signing is also consenting to the release on chain until expiresAt: no long-lived consent.
    assert_refused(sign_challenge_expiring_at(int(time.time()) + 3600), "refusing to sign a long-lived consent")


def test_local_commands_do_not_import_web3(device_keystore: tuple[Path, str], deployment_file: Path) -> None:
    flags = ("-X", "importtime")
    for process in (
        run_client("address", "--keystore", str(device_keystore[0]), python_flags=flags),
        run_client(
            "receipt",
            "--deployment",
            str(deployment_file),
            "--order",
            "1",
            "--buyer",
            BUYER.address,
            module=BUYER_CLI,
            python_flags=flags,
        ),
    ):
        assert process.returncode == 0, process.stderr
        modules = imported_modules(process)
        assert "thingledger_device.keystore" in modules or "thingledger_device.receipt" in modules
        assert "web3" not in modules and not any(name.startswith(("ape", "web3.")) for name in modules)
