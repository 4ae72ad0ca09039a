// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Vm} from "forge-std/Vm.sol";
import {ThingledgerSigning, ThingledgerTest} from "./ThingledgerTest.sol";
import {CrossChainRelay} from "../../../contracts/CrossChainRelay.sol";
import {ICrossChainRelay} from "../../../interfaces/ICrossChainRelay.sol";
import {RelayRecipientMock} from "../../../contracts/mocks/RelayRecipientMock.sol";

/// @notice CrossChainRelay hashing and signing, written independently of the contracts: the Message type string
/// and the relay's EIP-712 domain are spelled out here (RelayMessages is not imported), so the suites check
/// the contracts' encoding. Needs only `vm`, so the invariant handlers inherit it too.
abstract contract RelaySigning is ThingledgerSigning {
    bytes32 internal constant RELAY_MESSAGE_TYPEHASH = keccak256(
        "Message(uint8 version,uint64 nonce,uint64 srcChainId,address srcRelay,address sender,uint64 dstChainId,address dstRelay,address recipient,uint32 gasLimit,bytes payload)"
    );
    string internal constant RELAY_DOMAIN_NAME = "thingledger CrossChainRelay";

    /// @dev `MessageSent(bytes32,uint64,address,(uint8,uint64,uint64,address,address,uint64,address,address,uint32,bytes))`
    bytes32 internal constant MESSAGE_SENT_TOPIC = keccak256(
        "MessageSent(bytes32,uint64,address,(uint8,uint64,uint64,address,address,uint64,address,address,uint32,bytes))"
    );
    bytes32 internal constant MESSAGE_DELIVERED_TOPIC = keccak256("MessageDelivered(bytes32,uint64,address)");
    bytes32 internal constant MESSAGE_FAILED_TOPIC = keccak256("MessageFailed(bytes32,uint64,address,bytes)");

    // ------------------------------------------------------------------ hashing

    /// @dev The EIP-712 domain of the relay `relay` on chain `chainId`.
    function _relayDomain(uint256 chainId, address relay) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256(bytes(RELAY_DOMAIN_NAME)),
                keccak256(bytes("1")),
                chainId,
                relay
            )
        );
    }

    function _messageStructHash(ICrossChainRelay.Message memory m) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(
                RELAY_MESSAGE_TYPEHASH,
                uint256(m.version),
                uint256(m.nonce),
                uint256(m.srcChainId),
                m.srcRelay,
                m.sender,
                uint256(m.dstChainId),
                m.dstRelay,
                m.recipient,
                uint256(m.gasLimit),
                keccak256(m.payload)
            )
        );
    }

    /// @dev A message's id: its EIP-712 hash in the SOURCE relay's domain.
    function _messageId(ICrossChainRelay.Message memory m) internal pure returns (bytes32) {
        return _typedDigest(_relayDomain(m.srcChainId, m.srcRelay), _messageStructHash(m));
    }

    /// @dev What validators sign: the message's EIP-712 hash in the domain of the relay it names as destination.
    function _deliveryDigest(ICrossChainRelay.Message memory m) internal pure returns (bytes32) {
        return _deliveryDigestAt(m, m.dstChainId, m.dstRelay);
    }

    /// @dev The message's EIP-712 hash in the domain of relay `relay` on chain `chainId`.
    function _deliveryDigestAt(ICrossChainRelay.Message memory m, uint256 chainId, address relay)
        internal
        pure
        returns (bytes32)
    {
        return _typedDigest(_relayDomain(chainId, relay), _messageStructHash(m));
    }

    // ------------------------------------------------------------------ keys and signatures

    /// @dev A copy of `pks` ordered by ascending address.
    function _sortByAddress(uint256[] memory pks) internal pure returns (uint256[] memory sorted) {
        sorted = new uint256[](pks.length);
        for (uint256 i; i < pks.length; ++i) {
            uint256 pk = pks[i];
            address a = vm.addr(pk);
            uint256 j = i;
            while (j > 0 && vm.addr(sorted[j - 1]) > a) {
                sorted[j] = sorted[j - 1];
                --j;
            }
            sorted[j] = pk;
        }
    }

    function _addrs(uint256[] memory pks) internal pure returns (address[] memory out) {
        out = new address[](pks.length);
        for (uint256 i; i < pks.length; ++i) {
            out[i] = vm.addr(pks[i]);
        }
    }

    /// @dev 65-byte r ‖ s ‖ v signatures of `digest` by `pks`, concatenated in the order given.
    function _signDigestBy(bytes32 digest, uint256[] memory pks) internal pure returns (bytes memory sigs) {
        for (uint256 i; i < pks.length; ++i) {
            (uint8 v, bytes32 r, bytes32 s) = vm.sign(pks[i], digest);
            sigs = bytes.concat(sigs, abi.encodePacked(r, s, v));
        }
    }

    /// @dev Signatures of the message's delivery digest (destination domain) by `pks`, signers ascending.
    function _signMessage(ICrossChainRelay.Message memory m, uint256[] memory pks)
        internal
        pure
        returns (bytes memory)
    {
        return _signDigestBy(_deliveryDigest(m), _sortByAddress(pks));
    }

    /// @dev Signature number `i` of a concatenation.
    function _sigAt(bytes memory sigs, uint256 i) internal pure returns (bytes memory sig) {
        sig = new bytes(65);
        for (uint256 k; k < 65; ++k) {
            sig[k] = sigs[i * 65 + k];
        }
    }

    /// @dev ecrecover of a 65-byte r ‖ s ‖ v signature (what the relay sees for a signature of another digest).
    function _recoverSig(bytes32 digest, bytes memory sig) internal pure returns (address) {
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly {
            r := mload(add(sig, 32))
            s := mload(add(sig, 64))
            v := byte(0, mload(add(sig, 96)))
        }
        return ecrecover(digest, v, r, s);
    }

    // ------------------------------------------------------------------ small arrays

    function _one(uint256 a) internal pure returns (uint256[] memory out) {
        out = new uint256[](1);
        out[0] = a;
    }

    function _two(uint256 a, uint256 b) internal pure returns (uint256[] memory out) {
        out = new uint256[](2);
        out[0] = a;
        out[1] = b;
    }

    function _three(uint256 a, uint256 b, uint256 c) internal pure returns (uint256[] memory out) {
        out = new uint256[](3);
        out[0] = a;
        out[1] = b;
        out[2] = c;
    }

    // ------------------------------------------------------------------ logs

    /// @dev The messages of the `MessageSent` logs emitted by `relay` among `logs`.
    function _sentMessages(Vm.Log[] memory logs, address relay)
        internal
        pure
        returns (ICrossChainRelay.Message[] memory out)
    {
        uint256 n;
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter == relay && logs[i].topics[0] == MESSAGE_SENT_TOPIC) ++n;
        }
        out = new ICrossChainRelay.Message[](n);
        n = 0;
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter == relay && logs[i].topics[0] == MESSAGE_SENT_TOPIC) {
                out[n++] = abi.decode(logs[i].data, (ICrossChainRelay.Message));
            }
        }
    }

    /// @dev How many logs with topic0 `topic` and topic1 `id` `emitter` emitted.
    function _countLogs(Vm.Log[] memory logs, address emitter, bytes32 topic, bytes32 id)
        internal
        pure
        returns (uint256 n)
    {
        for (uint256 i; i < logs.length; ++i) {
            if (
                logs[i].emitter == emitter && logs[i].topics.length > 1 && logs[i].topics[0] == topic
                    && logs[i].topics[1] == id
            ) ++n;
        }
    }
}

/// @notice Base of the relay suites: chains simulated with `vm.chainId`. Relay A on chain 1001, relay B and a
/// second relay B2 on chain 1002, relay C on 1003; all share one validator set (2 of 3). A trusts B and C;
/// B, B2 and C trust A; C also trusts B. `sender` may send through A, B and C. `recipient` on chain B trusts `sender` on chain A. The
/// ThingledgerTest registry lives on chain A.
abstract contract RelayTest is RelaySigning, ThingledgerTest {
    uint64 internal constant CHAIN_A = 1001;
    uint64 internal constant CHAIN_B = 1002;
    uint64 internal constant CHAIN_C = 1003;
    uint32 internal constant CAPACITY = 1_000;
    uint32 internal constant REFILL_PER_HOUR = 3_600;
    uint32 internal constant GAS = 300_000;
    uint8 internal constant THRESHOLD = 2;

    CrossChainRelay internal relayA;
    CrossChainRelay internal relayB;
    CrossChainRelay internal relayB2;
    CrossChainRelay internal relayC;
    RelayRecipientMock internal recipient;

    address internal relayOwner = makeAddr("relay owner");
    address internal guardian = makeAddr("guardian");
    address internal sender = makeAddr("sender");
    address internal relayer = makeAddr("relayer");
    address internal stranger = makeAddr("stranger");

    /// @dev Six keys ordered by address; the first three are the validators of epoch 1.
    uint256[] internal pool;
    /// @dev The current validators' keys (ascending addresses).
    uint256[] internal validatorPks;

    mapping(address relay => uint64 chainId) internal chainOf;

    function setUp() public virtual override {
        vm.chainId(CHAIN_A);
        super.setUp();
        uint256[] memory keys = new uint256[](6);
        for (uint256 i; i < 6; ++i) {
            keys[i] = _pk(uint256(keccak256(abi.encode("relay validator", i))));
        }
        pool = _sortByAddress(keys);
        validatorPks = _three(pool[0], pool[1], pool[2]);
        address[] memory validators = _addrs(validatorPks);

        relayA = _deployRelay(CHAIN_A, validators, THRESHOLD);
        relayB = _deployRelay(CHAIN_B, validators, THRESHOLD);
        relayB2 = _deployRelay(CHAIN_B, validators, THRESHOLD);
        relayC = _deployRelay(CHAIN_C, validators, THRESHOLD);

        _setRemote(relayA, CHAIN_B, address(relayB));
        _setRemote(relayA, CHAIN_C, address(relayC));
        _setRemote(relayB, CHAIN_A, address(relayA));
        _setRemote(relayB2, CHAIN_A, address(relayA));
        _setRemote(relayC, CHAIN_A, address(relayA));
        _setRemote(relayC, CHAIN_B, address(relayB));
        _allowSender(relayA, sender);
        _allowSender(relayB, sender);
        _allowSender(relayC, sender);

        vm.chainId(CHAIN_B);
        recipient = new RelayRecipientMock(address(relayB));
        recipient.setTrusted(CHAIN_A, sender, true);
        vm.chainId(CHAIN_A);
    }

    function _deployRelay(uint64 chainId, address[] memory validators, uint8 threshold)
        internal
        returns (CrossChainRelay relay)
    {
        vm.chainId(chainId);
        relay = new CrossChainRelay(relayOwner, guardian, validators, threshold);
        chainOf[address(relay)] = chainId;
    }

    function _setRemote(CrossChainRelay relay, uint64 remoteChain, address remoteRelay) internal {
        _setRemote(relay, remoteChain, remoteRelay, CAPACITY, REFILL_PER_HOUR);
    }

    function _setRemote(CrossChainRelay relay, uint64 remoteChain, address remoteRelay, uint32 cap, uint32 refill)
        internal
    {
        vm.chainId(chainOf[address(relay)]);
        vm.prank(relayOwner);
        relay.setRemote(remoteChain, remoteRelay, cap, refill);
    }

    /// @dev The owner of `relay` allows `who` to send through it.
    function _allowSender(CrossChainRelay relay, address who) internal {
        vm.chainId(chainOf[address(relay)]);
        vm.prank(relayOwner);
        relay.setSenderAllowed(who, true);
    }

    /// @dev Switches to `relay`'s chain.
    function _on(CrossChainRelay relay) internal {
        vm.chainId(chainOf[address(relay)]);
    }

    /// @dev The message `from` (on chain `src`'s chain) would send now, built independently of the relay.
    function _expectedMessage(
        CrossChainRelay src,
        address from,
        CrossChainRelay dst,
        address to,
        uint32 gasLimit,
        bytes memory payload
    ) internal view returns (ICrossChainRelay.Message memory) {
        return ICrossChainRelay.Message({
            version: 1,
            nonce: src.nextNonce(),
            srcChainId: chainOf[address(src)],
            srcRelay: address(src),
            sender: from,
            dstChainId: chainOf[address(dst)],
            dstRelay: address(dst),
            recipient: to,
            gasLimit: gasLimit,
            payload: payload
        });
    }

    /// @dev `from` sends a message through `src` to `to` on `dst`'s chain; checks that the relay's id is the
    /// independently computed one and that the nonce advanced.
    function _sendFrom(
        address from,
        CrossChainRelay src,
        CrossChainRelay dst,
        address to,
        uint32 gasLimit,
        bytes memory payload
    ) internal returns (ICrossChainRelay.Message memory m) {
        _on(src);
        m = _expectedMessage(src, from, dst, to, gasLimit, payload);
        vm.prank(from);
        bytes32 id = src.send(chainOf[address(dst)], to, gasLimit, payload);
        assertEq(id, _messageId(m), "send: id != independent EIP-712 hash");
        assertEq(src.nextNonce(), m.nonce + 1, "send: nonce did not advance by one");
    }

    /// @dev `sender` sends from A to `recipient` on B.
    function _send(bytes memory payload) internal returns (ICrossChainRelay.Message memory) {
        return _sendFrom(sender, relayA, relayB, address(recipient), GAS, payload);
    }

    /// @dev Signatures of `m` by the first `threshold` current validators (ascending).
    function _sigs(ICrossChainRelay.Message memory m) internal view returns (bytes memory) {
        uint256[] memory pks = new uint256[](THRESHOLD);
        for (uint256 i; i < THRESHOLD; ++i) {
            pks[i] = validatorPks[i];
        }
        return _signMessage(m, pks);
    }

    /// @dev Delivers `m` on `dst`'s chain as `relayer`.
    function _deliver(CrossChainRelay dst, ICrossChainRelay.Message memory m, bytes memory sigs)
        internal
        returns (bytes32 id, bool success)
    {
        _on(dst);
        vm.prank(relayer);
        return dst.deliver(m, sigs);
    }
}

/// @dev Deep copy of a message, so a tampered copy leaves the original intact.
library MessageCopy {
    function copy(ICrossChainRelay.Message memory m) internal pure returns (ICrossChainRelay.Message memory) {
        return ICrossChainRelay.Message({
            version: m.version,
            nonce: m.nonce,
            srcChainId: m.srcChainId,
            srcRelay: m.srcRelay,
            sender: m.sender,
            dstChainId: m.dstChainId,
            dstRelay: m.dstRelay,
            recipient: m.recipient,
            gasLimit: m.gasLimit,
            payload: bytes.concat(m.payload)
        });
    }
}
