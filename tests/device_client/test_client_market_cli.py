"""The market commands as subprocesses, without a chain: usage errors (exit 2), bad values refused before
any key is unlocked or any RPC made (exit 1), one line on stderr and one JSON object with --json."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from client_helpers import (
    DEPLOYER,
    REGISTRY,
    SALES_ORDER,
    SERVICE_MARKET,
    assert_refused,
    json_output,
    run_client,
    write_deployment,
)

UNREACHABLE = "http://127.0.0.1:9"  # nothing listens on the discard port: any RPC would fail


@pytest.fixture
def market_deployment(tmp_path: Path) -> Path:
    return write_deployment(
        tmp_path / "market.json",
        chain_id=31337,
        registry=REGISTRY,
        sales_order=SALES_ORDER,
        deployer=DEPLOYER,
        service_market=SERVICE_MARKET,
    )


def assert_usage_error(process: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert process.returncode == 2, process
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], process.stderr


PUBLISH = ["publish-offer", "--service-type", "hvac-repair", "--unit-price", "100", "--units", "5"]
REQUEST = ["request", "--service-type", "hvac-repair", "--units", "2", "--max-unit-price", "100", "--policy", "lowest"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["offers"], "required: --service-type"),
        (["offers", "--service-type", "x", "--order", "cheapest"], "invalid choice: 'cheapest'"),
        (
            ["offers", "--service-type", "x", "--max-events", "3"],
            "--max-events, --timeout, --poll and --from-block go with --watch",
        ),
        (["offers", "--service-type", "x", "--from-block", "5"], "go with --watch"),
        (["offers", "--service-type", "x", "--watch", "--from-block", "-1"], "must not be negative"),
        (["offers", "--service-type", "x", "--limit", "0"], "must be at least 1"),
        (["offers", "--service-type", "x", "--limit", "1001"], "--limit: at most 1000"),
        (["offers", "--service-type", "x", "--watch", "--timeout", "0"], "must be a positive number of seconds"),
        (["offers", "--service-type", "x", "--watch", "--poll", "soon"], "is not a number of seconds"),
        (PUBLISH, "one of the arguments --valid-for --valid-until is required"),
        ([*PUBLISH, "--valid-for", "60", "--valid-until", "99"], "not allowed with argument"),
        (["update-offer-price", "--offer", "0", "--unit-price", "5"], "must be at least 1"),
        (["withdraw-offer"], "required: --offer"),
        (["decline", "--request", "x"], "is not an integer"),
        ([*REQUEST[:-1], "best", "--deadline-in", "60"], "invalid choice: 'best'"),
        (REQUEST, "required: --deadline-in"),
        (["attest", "--request", "1"], "one of the arguments --evidence --evidence-file is required"),
        (["confirm", "--request", "1", "--evidence", "0x" + "00" * 32, "--evidence-file", "f"], "not allowed with"),
        (["raise-max-price", "--request", "1"], "required: --max-unit-price"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args: list[str], fragment: str) -> None:
    assert_usage_error(run_client(*args), fragment)
    with_json = run_client(*args, "--json")
    assert with_json.returncode == 2 and "error" in json_output(with_json)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["offers", "--service-type", "0x12"], "--service-type: '0x12' is not 0x and 64 hex digits"),
        (
            [*PUBLISH[:4], str(2**96), *PUBLISH[5:], "--valid-for", "60"],
            "--unit-price: 79228162514264337593543950336 is out of range",
        ),
        ([*PUBLISH[:6], "0", "--valid-for", "60"], "--units: must be at least 1"),
        ([*PUBLISH[:6], str(2**32), "--valid-for", "60"], f"--units: {2**32} is out of range (1 to {2**32 - 1})"),
        ([*PUBLISH, "--valid-until", str(2**40)], f"--valid-until: {2**40} is out of range"),
        (
            [*REQUEST[:6], "1.5", *REQUEST[7:], "--deadline-in", "60"],
            "--max-unit-price: '1.5' is not a canonical decimal",
        ),
        ([*REQUEST, "--deadline-in", "60", "--attester", "0x1234"], "--attester: '0x1234' is not an address"),
        (["update-offer-price", "--offer", "1", "--unit-price", "-5"], "--unit-price: '-5' is not a canonical decimal"),
        (["confirm", "--request", "1", "--evidence", "0x12"], "--evidence: expected 0x and 64 hex digits"),
        (["attest", "--request", "1", "--evidence-file", "/nonexistent/reading"], "--evidence-file: cannot read"),
        (["raise-max-price", "--request", "1", "--max-unit-price", "0"], "--max-unit-price: must be at least 1 wei"),
    ],
)
def test_bad_values_are_refused_before_anything_else(market_deployment: Path, args: list[str], fragment: str) -> None:
    common = ["--deployment", str(market_deployment), "--rpc", UNREACHABLE]
    line = assert_refused(run_client(*args, *common), fragment)
    with_json = run_client(*args, *common, "--json")
    assert_refused(with_json, fragment)
    assert json_output(with_json) == {"error": line.removeprefix("error: ")}


def test_a_deployment_without_the_market_is_explained_without_any_rpc(tmp_path: Path) -> None:
    old = write_deployment(
        tmp_path / "old.json", chain_id=31337, registry=REGISTRY, sales_order=SALES_ORDER, deployer=DEPLOYER
    )
    for args in (["offers", "--service-type", "hvac"], ["request-status", "--request", "1"]):
        refused = run_client(*args, "--deployment", str(old), "--rpc", UNREACHABLE)
        assert_refused(refused, "the deployment file for chain 31337 has no ServiceMarket contract")
        assert "unreachable" not in refused.stderr


def test_value_errors_do_not_import_web3(market_deployment: Path) -> None:
    refused = run_client(
        "offers", "--service-type", "0x12", "--deployment", str(market_deployment), python_flags=("-X", "importtime")
    )
    assert refused.returncode == 1
    modules = {
        line.rsplit("|", 1)[1].strip() for line in refused.stderr.splitlines() if line.startswith("import time:")
    }
    assert "thingledger_device.market_cli" in modules and "thingledger_device.market_values" in modules
    assert "web3" not in modules and "thingledger_device.market" not in modules


def test_the_market_commands_are_listed_in_the_help() -> None:
    shown = run_client("--help")
    assert shown.returncode == 0
    for name in (
        "offers", "publish-offer", "update-offer-price", "withdraw-offer", "decline", "request", "confirm", "attest",
        "raise-max-price", "cancel-request", "refund", "match-request", "request-status", "withdraw-credit",
    ):  # fmt: skip
        assert f"    {name} " in shown.stdout or f"    {name}\n" in shown.stdout, name
