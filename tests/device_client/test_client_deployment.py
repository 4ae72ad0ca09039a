"""Loading the deployment file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from client_helpers import DEPLOYER, REGISTRY, SALES_ORDER, SERVICE_MARKET
from hypothesis import given
from hypothesis import strategies as st
from thingledger_device.deployment import load_deployment, parse_deployment
from thingledger_device.errors import DeviceClientError


def valid_document() -> dict[str, Any]:
    return {
        "chainId": 31337,
        "network": "ethereum:local:foundry",
        "deployer": DEPLOYER,
        "contracts": {
            "DeviceRegistry": {"address": REGISTRY, "block": 3},
            "SalesOrder": {"address": SALES_ORDER, "block": 4},
        },
    }


def test_loads_the_deploy_scripts_file(deployment_file: Path) -> None:
    deployment = load_deployment(deployment_file)
    assert deployment.chain_id == 31337
    assert deployment.registry.address == REGISTRY and deployment.registry.block == 1
    assert deployment.sales_order.address == SALES_ORDER and deployment.sales_order.block == 2
    assert deployment.deployer == DEPLOYER


def test_checksums_lowercase_addresses() -> None:
    document = valid_document()
    document["contracts"]["SalesOrder"]["address"] = SALES_ORDER.lower()
    assert parse_deployment(json.dumps(document)).sales_order.address == SALES_ORDER


def test_missing_file_and_missing_option(tmp_path: Path) -> None:
    with pytest.raises(DeviceClientError, match="cannot read deployment file"):
        load_deployment(tmp_path / "absent.json")
    with pytest.raises(DeviceClientError, match="THINGLEDGER_DEPLOYMENT"):
        load_deployment(None)


def _without(path: str) -> dict[str, Any]:
    document = valid_document()
    *parents, last = path.split(".")
    target = document
    for name in parents:
        target = target[name]
    del target[last]
    return document


def _with(path: str, value: Any) -> dict[str, Any]:
    document = valid_document()
    *parents, last = path.split(".")
    target = document
    for name in parents:
        target = target[name]
    target[last] = value
    return document


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (_without("chainId"), "missing field 'chainId'"),
        (_without("contracts.SalesOrder"), "contracts has no SalesOrder"),
        (_without("contracts.DeviceRegistry.address"), "missing field 'address'"),
        (_with("chainId", "31337"), "expected an integer"),
        (_with("chainId", True), "expected an integer"),
        (_with("chainId", 0), "chainId must be positive"),
        (_with("chainId", -1), "out of range"),
        (_with("network", 5), "network must be a string"),
        (_with("deployer", "0x1234"), "is not an address"),
        (_with("contracts.SalesOrder.address", SALES_ORDER.replace("e", "E", 1)), "EIP-55"),
        (_with("contracts.SalesOrder.block", -2), "out of range"),
        (_with("contracts", []), "contracts must be an object"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_rejects_malformed_deployments(document: Any, message: str) -> None:
    with pytest.raises(DeviceClientError) as raised:
        parse_deployment(json.dumps(document))
    assert message in raised.value.message


@given(st.text())
def test_arbitrary_text_only_raises_the_client_error(text: str) -> None:
    try:
        parse_deployment(text)
    except DeviceClientError:
        pass


def test_deeply_nested_json_is_a_client_error() -> None:
    with pytest.raises(DeviceClientError, match="nested deeper than"):
        parse_deployment("[" * 10_000)
    with pytest.raises(DeviceClientError, match="longer than"):
        parse_deployment(" " * 100_000)


def test_service_market_is_optional() -> None:
    assert parse_deployment(json.dumps(valid_document())).service_market is None
    document = valid_document()
    document["contracts"]["ServiceMarket"] = {"address": SERVICE_MARKET.lower(), "block": 5}
    deployment = parse_deployment(json.dumps(document))
    assert deployment.service_market is not None and deployment.service_market.address == SERVICE_MARKET
    assert deployment.require_service_market().block == 5
    with pytest.raises(DeviceClientError, match="for chain 31337 has no ServiceMarket contract"):
        parse_deployment(json.dumps(valid_document())).require_service_market()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"address": "0x1234", "block": 5}, "contracts.ServiceMarket.address"),
        ({"block": 5}, "missing field 'address'"),
        ("0xabc", "contracts.ServiceMarket must be an object"),
    ],
)
def test_a_malformed_service_market_entry_is_refused(entry: Any, message: str) -> None:
    document = valid_document()
    document["contracts"]["ServiceMarket"] = entry
    with pytest.raises(DeviceClientError) as raised:
        parse_deployment(json.dumps(document))
    assert message in raised.value.message
