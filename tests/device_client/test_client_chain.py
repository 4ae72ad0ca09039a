"""web3 access: retries with exponential backoff, the chain id check, revert decoding, the shipped ABIs."""

from __future__ import annotations

import socket
import time

import pytest
from client_helpers import DEPLOYER, REGISTRY, SALES_ORDER
from eth_abi.abi import encode
from eth_utils.crypto import keccak
from thingledger_device.chain import Chain, connect
from thingledger_device.contracts import decode_error, load_abi
from thingledger_device.deployment import ContractLocation, Deployment
from thingledger_device.errors import DeviceClientError

DEPLOYMENT = Deployment(31337, "local", DEPLOYER, ContractLocation(REGISTRY, 1), ContractLocation(SALES_ORDER, 2))


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


def test_unreachable_rpc_is_retried_with_exponential_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    delays: list[float] = []
    monkeypatch.setattr("thingledger_device.chain.time.sleep", delays.append)
    chain = Chain(closed_port_url(), DEPLOYMENT, attempts=4, first_delay=0.25)
    with pytest.raises(DeviceClientError, match=r"unreachable \(eth_chainId\): gave up after 4 attempts"):
        chain.check_chain()
    assert delays == [0.25, 0.5, 1.0]


def test_unreachable_rpc_fails_within_about_five_seconds() -> None:
    started = time.monotonic()
    with pytest.raises(DeviceClientError, match="unreachable"):
        connect(closed_port_url(), DEPLOYMENT)
    assert time.monotonic() - started < 5.5


def test_wrong_chain_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    chain = Chain(closed_port_url(), DEPLOYMENT)
    monkeypatch.setattr(chain, "chain_id", lambda: 1)
    with pytest.raises(DeviceClientError, match="wrong chain: deployment is for chain 31337, RPC serves chain 1"):
        chain.check_chain()


def test_rpc_must_be_http() -> None:
    with pytest.raises(DeviceClientError, match="http"):
        Chain("ws://127.0.0.1:8545", DEPLOYMENT)


def test_decodes_custom_errors_of_both_contracts_with_enum_names() -> None:
    unknown = selector("UnknownOrder(uint256)") + encode(["uint256"], [5])
    assert str(decode_error("0x" + unknown.hex())) == "UnknownOrder(orderId=5)"
    status = selector("WrongStatus(uint256,uint8)") + encode(["uint256", "uint8"], [5, 3])
    assert str(decode_error(status)) == "WrongStatus(orderId=5, status=Released)"
    inactive = selector("DeviceNotActive(uint256,uint8)") + encode(["uint256", "uint8"], [9, 3])
    decoded = decode_error(inactive)
    assert (
        decoded is not None
        and decoded.name == "DeviceNotActive"
        and str(decoded) == "DeviceNotActive(deviceId=9, current=Suspended)"
    )
    gate = selector("GateNotAuthorized(uint256,address)") + encode(["uint256", "address"], [9, SALES_ORDER.lower()])
    assert str(decode_error(gate)) == f"GateNotAuthorized(gateId=9, seller={SALES_ORDER})"


@pytest.mark.parametrize(
    "data", [None, "", "0x", "0x1234", "zz", "0xdeadbeef", selector("UnknownOrder(uint256)") + b"\x01"]
)
def test_undecodable_revert_data_gives_none(data: str | bytes | None) -> None:
    assert decode_error(data) is None


def test_shipped_abis_hold_what_the_client_calls() -> None:
    functions = {
        entry["name"]
        for name in ("DeviceRegistry", "SalesOrder")
        for entry in load_abi(name)
        if entry["type"] == "function"
    }
    assert {"deviceIdOfKey", "getDevice", "hasPermission", "ownerOf", "warrantyActive"} <= functions
    assert {"getOrder", "verifyOwnership", "release", "lastOrderId"} <= functions
