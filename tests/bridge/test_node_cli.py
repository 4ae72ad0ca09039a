"""The CLI's contract with its users: usage errors exit 2 and configuration/runtime errors exit 1, each as
one line on stderr and never a traceback; `messages`, `parked` and `status` print the agreed JSON shape."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bridge_helpers import MESSAGE_JSON_FIELDS as SHAPE
from thingledger_bridge.cli import main
from thingledger_bridge.devnet import free_port
from thingledger_bridge.messages import Message, SentLog
from thingledger_bridge.relayer_store import RelayerStore



def sent(nonce: int) -> SentLog:
    message = Message.from_tuple(
        (1, nonce, 1001, "0x" + "a1" * 20, "0x" + "c3" * 20, 1002, "0x" + "b2" * 20, "0x" + "d4" * 20, 90_000, b"")
    )
    return SentLog(message.message_id(), message, message.src_relay, 5, b"\x05" * 32, b"\x06" * 32, nonce)


@pytest.fixture()
def config(tmp_path: Path) -> Path:
    """A configuration whose chains do not answer (nothing listens on their ports) and a relayer database
    with three messages: delivered, parked, pending."""
    ports = (free_port(), free_port())
    path = tmp_path / "node.toml"
    path.write_text(
        'signature_store = "sigs"\n'
        + "".join(
            f'[[chains]]\nname = "c{cid}"\nchain_id = {cid}\nrpc_url = "http://127.0.0.1:{port}"\n'
            f'relay = "0x{"a1" if cid == 1001 else "b2"}{"00" * 19}"\n'
            for cid, port in zip((1001, 1002), ports, strict=True)
        )
        + '[relayer]\nprivate_key_env = "TEST_RELAYER_KEY"\ndatabase = "relayer.sqlite"\n'
    )
    store = RelayerStore(tmp_path / "relayer.sqlite")
    store.record_scan(1001, [sent(0), sent(1), sent(2)], 9)
    ids = ["0x" + sent(n).id.hex() for n in range(3)]
    store.record_submission(
        ids[0],
        kind="deliver",
        chain_id=1002,
        account="0x" + "ee" * 20,
        account_nonce=0,
        tx_hash=b"\x11" * 32,
        raw_tx=b"raw",
        gas=1,
    )
    store.mark_delivered(ids[0], "us")
    store.park(ids[1], 8, "UntrustedSource(srcChainId=1001, srcRelay=0x..)")
    store.close()
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, *fragments: str) -> None:
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ((), "required: COMMAND"),
        (("launch",), "invalid choice: 'launch'"),
        (("run",), "required: --config"),
        (("messages", "--config", "x.toml", "--state", "lost"), "invalid choice: 'lost'"),
        (("status", "--config", "x.toml"), "required: ID"),
        (("status", "0x1234", "--config", "x.toml"), "32 bytes of hex"),
        (("retry", "0x" + "00" * 32, "--config", "x.toml", "--gas-limit", "-5"), "must be positive"),
        (("run", "--config", "x.toml", "--bogus"), "unrecognized arguments: --bogus"),
    ],
)
def test_usage_errors_exit_2_in_one_line(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], fragment: str
) -> None:
    code, out, err = run(capsys, *args)
    assert code == 2 and out == ""
    assert_one_line_error(err, fragment)


def test_a_bad_failpoint_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("THINGLEDGER_BRIDGE_FAILPOINT", "relayer.nowhere")
    code, _, err = run(capsys, "messages", "--config", str(config))
    assert code == 2
    assert_one_line_error(err, "unknown failpoint 'relayer.nowhere'")


def test_runtime_errors_exit_1_in_one_line(
    capsys: pytest.CaptureFixture[str], config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run(capsys, "messages", "--config", str(tmp_path / "absent.toml"))
    assert code == 1
    assert_one_line_error(err, "absent.toml: configuration file not found")
    code, _, err = run(capsys, "validator", "--config", str(config), "--once")
    assert code == 1
    assert_one_line_error(err, "no [validator] section")
    monkeypatch.delenv("TEST_RELAYER_KEY", raising=False)
    code, _, err = run(capsys, "run", "--config", str(config), "--once")
    assert code == 1
    assert_one_line_error(err, "environment variable TEST_RELAYER_KEY is not set")
    monkeypatch.setenv("TEST_RELAYER_KEY", "0x1234")
    code, _, err = run(capsys, "run", "--config", str(config), "--once")
    assert_one_line_error(err, "does not hold a 32-byte hex private key")
    monkeypatch.setenv("TEST_RELAYER_KEY", "0x" + "01" * 32)
    code, _, err = run(capsys, "run", "--config", str(config), "--once")
    assert code == 1
    assert_one_line_error(err, "cannot reach http://127.0.0.1:")
    code, _, err = run(capsys, "status", "0x" + "ab" * 32, "--config", str(config))
    assert code == 1
    assert_one_line_error(err, "unknown message 0x" + "ab" * 32)


def test_messages_parked_and_status_json_shapes(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    ids = ["0x" + sent(n).id.hex() for n in range(3)]
    code, out, err = run(capsys, "messages", "--config", str(config), "--json")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert all(set(line) == SHAPE for line in lines)
    assert [(line["id"], line["state"], line["nonce"]) for line in lines] == [
        (ids[0], "delivered", 0),
        (ids[1], "parked", 1),
        (ids[2], "pending", 2),
    ]
    assert lines[0]["tx_hashes"] == ["0x" + "11" * 32] and lines[0]["destination_status"] is None
    assert (lines[0]["src_chain_id"], lines[0]["dst_chain_id"]) == (1001, 1002)

    code, out, _ = run(capsys, "messages", "--config", str(config), "--state", "pending", "--json")
    assert [json.loads(line)["id"] for line in out.splitlines()] == [ids[2]]

    code, out, _ = run(capsys, "parked", "--config", str(config), "--json")
    (parked,) = [json.loads(line) for line in out.splitlines()]
    assert (parked["id"], parked["attempts"], parked["last_error"].split("(")[0]) == (ids[1], 8, "UntrustedSource")

    # The destination does not answer: its status is not read (null), the command still succeeds.
    code, out, err = run(capsys, "status", ids[0].upper().replace("0X", "0x"), "--config", str(config), "--json")
    assert code == 0, err
    status: dict[str, Any] = json.loads(out)
    assert set(status) == SHAPE and status["state"] == "delivered" and status["destination_status"] is None


def test_human_output_is_a_table(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    code, out, _ = run(capsys, "messages", "--config", str(config))
    assert code == 0 and "3 message(s)" in out and "parked" in out and "1001->1002" in out
    code, out, _ = run(capsys, "parked", "--config", str(config))
    assert "UntrustedSource" in out


def test_retry_of_a_parked_message_requeues_it(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    parked = "0x" + sent(1).id.hex()
    code, out, err = run(capsys, "retry", parked, "--config", str(config), "--json")
    assert code == 0, err
    assert {k: json.loads(out)[k] for k in ("event", "state", "attempts")} == {
        "event": "requeued",
        "state": "pending",
        "attempts": 0,
    }


def test_the_installed_entry_point_never_prints_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("signature_store = [")
    for args, code in ((["messages", "--config", str(bad)], 1), (["status"], 2), ([], 2)):
        result = subprocess.run(
            [sys.executable, "-m", "thingledger_bridge", *args], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == code
        assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
    ok = subprocess.run(
        [sys.executable, "-m", "thingledger_bridge", "--help"], capture_output=True, text=True, timeout=60
    )
    assert ok.returncode == 0 and "validator" in ok.stdout and "retry" in ok.stdout
