"""The node's chain access: custom errors decoded by selector from the relay's ABI (synthetic revert data and
real reverts of a relay on anvil), JSON-RPC retries with backoff on connection errors, batched reads, chunked
eth_getLogs."""

from __future__ import annotations

import time
from typing import Any

import pytest
from bridge_helpers import BusyRpcServer, RelayStack, encode_error, message_tuple
from eth_abi import encode as abi_encode
from eth_utils import keccak
from thingledger_bridge.chain import ChainClient, ChainUnavailable, RevertError, Rpc, hexbytes
from thingledger_bridge.config import ChainConfig
from thingledger_bridge.devnet import free_port
from thingledger_bridge.messages import MESSAGE_SENT_TOPIC
from thingledger_bridge.relay_abi import relay_abi


def client_for(side: Any, **overrides: Any) -> ChainClient:
    config = ChainConfig(
        name=f"c{side.chain_id}",
        chain_id=side.chain_id,
        rpc_url=side.chain.rpc_url,
        relay=side.relay.address,
        **overrides,
    )
    return ChainClient(config)


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("RateLimited", (1001, 3600), {"srcChainId": 1001, "retryAfter": 3600}),
        ("AlreadyProcessed", (b"\x01" * 32, 2), {"id": b"\x01" * 32, "status": "Failed"}),
        ("TooFewSignatures", (1, 2), {"count": 1, "threshold": 2}),
        ("NotValidator", (0, "0x" + "ab" * 20), {"index": 0, "signer": "0x" + "Ab" * 20}),
        ("SignersNotAscending", (1,), {"index": 1}),
        ("InvalidSignature", (0,), {"index": 0}),
        ("MalformedSignatures", (64,), {"length": 64}),
        ("UntrustedSource", (1001, "0x" + "cd" * 20), {"srcChainId": 1001, "srcRelay": "0x" + "cD" * 20}),
        ("WrongDestination", (1003, "0x" + "ef" * 20), {"dstChainId": 1003, "dstRelay": "0x" + "eF" * 20}),
        ("UnsupportedVersion", (2,), {"version": 2}),
        ("InsufficientGas", (100, 200), {"available": 100, "required": 200}),
        ("EnforcedPause", (), {}),
    ],
)
def test_custom_errors_decode_by_selector(relay_stack: RelayStack, name: str, args: tuple, expected: dict) -> None:
    data = encode_error(relay_stack.b.relay, name, *args)
    decoded = relay_abi().decode_error(data)
    assert decoded is not None and decoded.name == name
    normalized = {k: (v.lower() if isinstance(v, str) else v) for k, v in decoded.args.items()}
    assert normalized == {k: (v.lower() if isinstance(v, str) else v) for k, v in expected.items()}
    assert relay_abi().describe_revert(data).startswith(name + "(")


def test_standard_and_unknown_errors() -> None:
    abi = relay_abi()
    data = keccak(text="Error(string)")[:4] + abi_encode(["string"], ["nope"])
    assert str(abi.decode_error(data)) == "Error(message='nope')"
    assert abi.decode_error(b"\xde\xad\xbe\xef") is None
    assert abi.decode_error(b"\x01") is None
    assert abi.describe_revert(b"\xde\xad\xbe\xef" + b"\x00" * 64).startswith("unknown error 0xdeadbeef")
    assert abi.describe_revert(b"") == "reverted without data"
    # A known selector with arguments that do not decode is unknown, not a crash.
    assert abi.decode_error(keccak(text="TooFewSignatures(uint256,uint256)")[:4] + b"\x01") is None


def test_real_reverts_are_decoded(relay_stack: RelayStack) -> None:
    message_id, message = relay_stack.send(relay_stack.a, relay_stack.b, payload=b"decode me")
    client = client_for(relay_stack.b)
    abi = relay_abi()
    unsigned = abi.encode("deliver", message_tuple(message), b"")
    with pytest.raises(RevertError) as caught:
        client.estimate_gas(relay_stack.b.relayer, unsigned)
    assert caught.value.name == "TooFewSignatures"
    assert caught.value.decoded is not None and caught.value.decoded.args == {"count": 0, "threshold": 2}
    relay_stack.deliver(message)
    signed = abi.encode("deliver", message_tuple(message), relay_stack.sign(message))
    (again,) = client.estimate_gas_many(relay_stack.b.relayer, [signed])
    assert isinstance(again, RevertError) and again.name == "AlreadyProcessed"
    assert again.decoded is not None and again.decoded.args == {"id": message_id, "status": "Delivered"}
    assert client.message_statuses([message_id, b"\x00" * 32]) == [1, 0]


def test_safe_head_by_depth_and_chunked_logs(relay_stack: RelayStack) -> None:
    start = relay_stack.a.web3.eth.block_number + 1
    sent = [relay_stack.send(relay_stack.a, relay_stack.b, payload=bytes([n]))[0] for n in range(5)]
    client = client_for(relay_stack.a, confirmations=3, max_block_range=2)
    head = client.head()
    assert client.safe_head() == head - 3
    logs = client.get_logs(start, head, [hexbytes(MESSAGE_SENT_TOPIC)])
    assert [bytes.fromhex(log["topics"][1][2:]) for log in logs] == sent


def test_rpc_retries_server_errors_then_answers_and_matches_batch_ids() -> None:
    with BusyRpcServer(busy=2) as server:
        rpc = Rpc(server.url, retries=3)
        assert rpc.call("eth_blockNumber", []) == "0x2a"
        assert server.requests == 3  # two 503s, then the answer
        results = rpc.batch([("eth_blockNumber", []), ("eth_chainId", [])])
        # The server answered in reverse order: results still line up with the calls by id.
        assert [int(r, 16) for r in results] == sorted(int(r, 16) for r in results)


def test_an_unreachable_endpoint_is_one_line_after_retries() -> None:
    rpc = Rpc(f"http://127.0.0.1:{free_port()}", retries=2, label="chain test")
    started = time.monotonic()
    with pytest.raises(ChainUnavailable) as caught:
        rpc.call("eth_blockNumber", [])
    assert time.monotonic() - started >= 0.3  # backed off 0.1 s, then 0.2 s
    assert caught.value.message.startswith("chain test: cannot reach http://127.0.0.1:")
    assert "\n" not in caught.value.message


def test_safe_head_by_the_nodes_finalized_block(relay_stack: RelayStack) -> None:
    client = client_for(relay_stack.a, finality="finalized", confirmations=0)
    finalized = relay_stack.a.web3.eth.get_block("finalized")["number"]
    head = client.head()
    assert client.safe_head() == finalized
    assert finalized < head  # anvil finalizes well behind its head: "finalized" is not the head
