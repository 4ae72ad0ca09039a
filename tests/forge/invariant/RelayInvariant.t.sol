// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Test, console} from "forge-std/Test.sol";
import {StdUtils} from "forge-std/StdUtils.sol";
import {StdInvariant} from "forge-std/StdInvariant.sol";
import {Vm} from "forge-std/Vm.sol";
import {CrossChainRelay} from "../../../contracts/CrossChainRelay.sol";
import {RelayRecipientMock} from "../../../contracts/mocks/RelayRecipientMock.sol";
import {ICrossChainRelay} from "../../../interfaces/ICrossChainRelay.sol";
import {RelaySigning} from "../utils/RelayTest.sol";

/// @notice Drives two relays (A on chain 1001, B on 1002, each trusting the other) and a recipient mock on each
/// side: sends both ways, deliveries with valid and invalid signature sets, duplicate deliveries, retries,
/// recipient mode flips, time warps and validator rotations. The handler owns both relays. After every action
/// it sweeps all known messages and records any status change that is not None->Delivered, None->Failed or
/// Failed->Delivered, and counts MessageDelivered logs per id.
contract RelayHandler is RelaySigning, StdUtils {
    uint64 public constant CHAIN_A = 1001;
    uint64 public constant CHAIN_B = 1002;
    uint32 public constant CAPACITY = 3;
    uint32 public constant REFILL_PER_HOUR = 180; // a token every 20 s

    CrossChainRelay public immutable relayA;
    CrossChainRelay public immutable relayB;
    RelayRecipientMock public immutable recipientA; // on A, for messages from B
    RelayRecipientMock public immutable recipientB; // on B, for messages from A
    address public immutable app = address(0xA99);
    uint256 public immutable start;

    /// @dev Eight keys; a relay's validators are always some of them.
    uint256[] internal pool;
    mapping(address relay => uint256[] keys) internal current;
    mapping(address relay => uint8) internal thresholdOf;

    ICrossChainRelay.Message[] internal messages;
    bytes32[] internal ids;
    mapping(bytes32 id => ICrossChainRelay.MessageStatus) public lastStatus;
    mapping(bytes32 id => uint256) public deliveredLogs;

    /// @dev Successful `deliver` calls (each takes a token) per source chain.
    mapping(uint64 srcChainId => uint256) public tokensTaken;
    uint256 public ghostIllegalTransitions;
    uint256 public ghostInvalidAccepted;
    uint256 public ghostDuplicateAccepted;
    uint256 public ghostRetryOfNonFailedAccepted;
    uint256 public ghostDelivered;
    uint256 public ghostFailed;
    uint256 public ghostRetried;
    uint256 public ghostRotations;
    uint256 public ghostRateLimited;
    uint256 public ghostRefused;

    constructor() {
        start = block.timestamp;
        uint256[] memory keys = new uint256[](8);
        for (uint256 i; i < 8; ++i) {
            keys[i] = _pk(uint256(keccak256(abi.encode("invariant validator", i))));
        }
        pool = _sortByAddress(keys);
        uint256[] memory first = new uint256[](3);
        for (uint256 i; i < 3; ++i) {
            first[i] = pool[i];
        }
        vm.chainId(CHAIN_A);
        relayA = new CrossChainRelay(address(this), address(this), _addrs(first), 2);
        vm.chainId(CHAIN_B);
        relayB = new CrossChainRelay(address(this), address(this), _addrs(first), 2);
        relayB.setRemote(CHAIN_A, address(relayA), CAPACITY, REFILL_PER_HOUR);
        relayB.setSenderAllowed(app, true);
        recipientB = new RelayRecipientMock(address(relayB));
        recipientB.setTrusted(CHAIN_A, app, true);
        vm.chainId(CHAIN_A);
        relayA.setRemote(CHAIN_B, address(relayB), CAPACITY, REFILL_PER_HOUR);
        relayA.setSenderAllowed(app, true);
        recipientA = new RelayRecipientMock(address(relayA));
        recipientA.setTrusted(CHAIN_B, app, true);
        current[address(relayA)] = first;
        current[address(relayB)] = first;
        thresholdOf[address(relayA)] = 2;
        thresholdOf[address(relayB)] = 2;
    }

    // ------------------------------------------------------------------ actions

    function send(bool fromA, uint256 payloadSeed, bool lowGas) external {
        CrossChainRelay src = fromA ? relayA : relayB;
        CrossChainRelay dst = fromA ? relayB : relayA;
        address to = fromA ? address(recipientB) : address(recipientA);
        // 60,000 gas is too little for a recipient's first writes: such messages fail and need a retry
        uint32 gasLimit = lowGas ? 60_000 : 400_000;
        bytes memory payload = abi.encode(payloadSeed);
        vm.chainId(fromA ? CHAIN_A : CHAIN_B);
        vm.prank(app);
        bytes32 id = src.send(fromA ? CHAIN_B : CHAIN_A, to, gasLimit, payload);
        ICrossChainRelay.Message memory m = ICrossChainRelay.Message({
            version: 1,
            nonce: src.nextNonce() - 1,
            srcChainId: fromA ? CHAIN_A : CHAIN_B,
            srcRelay: address(src),
            sender: app,
            dstChainId: fromA ? CHAIN_B : CHAIN_A,
            dstRelay: address(dst),
            recipient: to,
            gasLimit: gasLimit,
            payload: payload
        });
        require(_messageId(m) == id, "send: id mismatch");
        messages.push(m);
        ids.push(id);
    }

    /// @dev Delivers the first message not yet processed from `index` on (any message if all are).
    /// sigMode % 8: 0-3 valid (the threshold's first signers), 4 valid (all validators); 5 one below the
    /// threshold; 6 with a non-validator (a key outside the current set, often a rotated-out one); 7 unsorted or
    /// a duplicated signer.
    function deliver(uint256 index, uint256 sigMode) external {
        uint256 n = messages.length;
        if (n == 0) return;
        ICrossChainRelay.Message memory m = messages[index % n];
        for (uint256 k; k < n; ++k) {
            ICrossChainRelay.Message memory candidate = messages[(index % n + k) % n];
            if (
                CrossChainRelay(candidate.dstRelay).messageStatus(_messageId(candidate))
                    == ICrossChainRelay.MessageStatus.None
            ) {
                m = candidate;
                break;
            }
        }
        sigMode = sigMode % 8;
        _deliver(m, _signatures(m, sigMode), sigMode >= 5);
    }

    /// @dev Delivers (validly signed) a message that was already processed on its destination, if any.
    function deliverDuplicate(uint256 index) external {
        uint256 n = messages.length;
        for (uint256 k; k < n; ++k) {
            ICrossChainRelay.Message memory m = messages[(index % n + k) % n];
            if (CrossChainRelay(m.dstRelay).messageStatus(_messageId(m)) != ICrossChainRelay.MessageStatus.None) {
                _deliver(m, _signatures(m, 0), false);
                return;
            }
        }
    }

    /// @dev Retries the first Failed message from `index` on (any message if none is Failed).
    function retry(uint256 index, uint256 extraGas) external {
        uint256 n = messages.length;
        if (n == 0) return;
        ICrossChainRelay.Message memory m = messages[index % n];
        for (uint256 k; k < n; ++k) {
            ICrossChainRelay.Message memory candidate = messages[(index % n + k) % n];
            if (
                CrossChainRelay(candidate.dstRelay).messageStatus(_messageId(candidate))
                    == ICrossChainRelay.MessageStatus.Failed
            ) {
                m = candidate;
                break;
            }
        }
        CrossChainRelay dst = CrossChainRelay(m.dstRelay);
        bytes32 id = _messageId(m);
        ICrossChainRelay.MessageStatus before = dst.messageStatus(id);
        uint32 gasLimit = uint32(m.gasLimit + _bound(extraGas, 0, 600_000));
        vm.chainId(m.dstChainId);
        vm.recordLogs();
        try dst.retry(m, gasLimit) {
            if (before != ICrossChainRelay.MessageStatus.Failed) ++ghostRetryOfNonFailedAccepted;
            ++ghostRetried;
        } catch {}
        _afterAction(vm.getRecordedLogs());
    }

    function setMode(bool onA, uint256 mode) external {
        // Accept, Revert, RevertBomb, ReturnBomb, BurnGas, Reenter (re-entering with empty calldata: refused)
        (onA ? recipientA : recipientB).setMode(RelayRecipientMock.Mode(mode % 6));
    }

    function warp(uint256 secondsAhead) external {
        vm.warp(block.timestamp + _bound(secondsAhead, 0, 20));
    }

    /// @dev A new validator set of 1 to 5 keys of the pool and a majority threshold on one relay.
    function rotate(bool onA, uint256 seed, uint256 thresholdSeed) external {
        CrossChainRelay relay = onA ? relayA : relayB;
        uint256 n = _bound(seed, 1, 5);
        uint256 offset = (seed >> 8) % pool.length;
        uint256[] memory keys = new uint256[](n);
        for (uint256 i; i < n; ++i) {
            keys[i] = pool[(offset + i) % pool.length];
        }
        keys = _sortByAddress(keys);
        uint8 threshold = uint8(_bound(thresholdSeed, n / 2 + 1, n));
        vm.chainId(onA ? CHAIN_A : CHAIN_B);
        relay.setValidators(_addrs(keys), threshold);
        current[address(relay)] = keys;
        thresholdOf[address(relay)] = threshold;
        ++ghostRotations;
    }

    // ------------------------------------------------------------------ internals

    function _deliver(ICrossChainRelay.Message memory m, bytes memory sigs, bool invalid) internal {
        CrossChainRelay dst = CrossChainRelay(m.dstRelay);
        bytes32 id = _messageId(m);
        ICrossChainRelay.MessageStatus before = dst.messageStatus(id);
        vm.chainId(m.dstChainId);
        vm.recordLogs();
        try dst.deliver(m, sigs) returns (bytes32 got, bool success) {
            require(got == id, "deliver: id mismatch");
            if (invalid) ++ghostInvalidAccepted;
            if (before != ICrossChainRelay.MessageStatus.None) ++ghostDuplicateAccepted;
            ++tokensTaken[m.srcChainId];
            if (success) ++ghostDelivered;
            else ++ghostFailed;
        } catch (bytes memory err) {
            if (bytes4(err) == ICrossChainRelay.RateLimited.selector) ++ghostRateLimited;
            else ++ghostRefused;
        }
        _afterAction(vm.getRecordedLogs());
    }

    function _signatures(ICrossChainRelay.Message memory m, uint256 sigMode) internal view returns (bytes memory) {
        uint256[] storage keys = current[m.dstRelay];
        uint256 threshold = thresholdOf[m.dstRelay];
        if (sigMode == 4) return _signMessage(m, keys);
        if (sigMode == 6) {
            // the threshold's first signers but one replaced by a key outside the current set
            uint256 outsider = _outsider(keys);
            uint256[] memory signers = new uint256[](threshold);
            for (uint256 i; i + 1 < threshold; ++i) {
                signers[i] = keys[i];
            }
            signers[threshold - 1] = outsider;
            return _signMessage(m, signers);
        }
        uint256 count = sigMode == 5 ? threshold - 1 : threshold;
        uint256[] memory chosen = new uint256[](count);
        for (uint256 i; i < count; ++i) {
            chosen[i] = keys[i];
        }
        bytes memory sigs = _signMessage(m, chosen);
        if (sigMode != 7) return sigs;
        if (count == 1) return bytes.concat(sigs, sigs); // duplicate signer
        // swap the first two: descending
        return bytes.concat(_sigAt(sigs, 1), _sigAt(sigs, 0), _rest(sigs, 2));
    }

    function _outsider(uint256[] storage keys) internal view returns (uint256) {
        for (uint256 i; i < pool.length; ++i) {
            bool inSet;
            for (uint256 k; k < keys.length; ++k) {
                if (keys[k] == pool[i]) inSet = true;
            }
            if (!inSet) return pool[i];
        }
        revert("no outsider");
    }

    function _rest(bytes memory sigs, uint256 from) internal pure returns (bytes memory out) {
        out = new bytes(sigs.length - from * 65);
        for (uint256 i; i < out.length; ++i) {
            out[i] = sigs[from * 65 + i];
        }
    }

    /// @dev Counts MessageDelivered logs per id and checks every known message's status change.
    function _afterAction(Vm.Log[] memory logs) internal {
        for (uint256 i; i < logs.length; ++i) {
            if (
                (logs[i].emitter == address(relayA) || logs[i].emitter == address(relayB))
                    && logs[i].topics[0] == MESSAGE_DELIVERED_TOPIC
            ) ++deliveredLogs[logs[i].topics[1]];
        }
        for (uint256 i; i < ids.length; ++i) {
            bytes32 id = ids[i];
            ICrossChainRelay.MessageStatus was = lastStatus[id];
            ICrossChainRelay.MessageStatus now_ = CrossChainRelay(messages[i].dstRelay).messageStatus(id);
            if (now_ == was) continue;
            bool legal = (was == ICrossChainRelay.MessageStatus.None && now_ != ICrossChainRelay.MessageStatus.None)
                || (was == ICrossChainRelay.MessageStatus.Failed && now_ == ICrossChainRelay.MessageStatus.Delivered);
            if (!legal) ++ghostIllegalTransitions;
            lastStatus[id] = now_;
        }
    }

    // ------------------------------------------------------------------ views for the suite

    function messageCount() external view returns (uint256) {
        return messages.length;
    }

    function messageAt(uint256 i) external view returns (ICrossChainRelay.Message memory) {
        return messages[i];
    }

    function idAt(uint256 i) external view returns (bytes32) {
        return ids[i];
    }
}

/// @notice Invariants of CrossChainRelay under the handler above.
contract RelayInvariantTest is StdInvariant, Test {
    RelayHandler internal handler;

    function setUp() public {
        vm.warp(1_750_000_000);
        handler = new RelayHandler();
        targetContract(address(handler));
        bytes4[] memory selectors = new bytes4[](9);
        selectors[0] = RelayHandler.send.selector;
        selectors[1] = RelayHandler.send.selector;
        selectors[2] = RelayHandler.deliver.selector;
        selectors[3] = RelayHandler.deliver.selector;
        selectors[4] = RelayHandler.deliverDuplicate.selector;
        selectors[5] = RelayHandler.retry.selector;
        selectors[6] = RelayHandler.setMode.selector;
        selectors[7] = RelayHandler.warp.selector;
        selectors[8] = RelayHandler.rotate.selector;
        targetSelector(FuzzSelector({addr: address(handler), selectors: selectors}));
    }

    /// @dev What a run did (shown with -vv), to see that the handler reaches every outcome.
    function afterInvariant() public view {
        console.log("delivered", handler.ghostDelivered(), "failed", handler.ghostFailed());
        console.log("retried", handler.ghostRetried(), "rate limited", handler.ghostRateLimited());
        console.log("refused", handler.ghostRefused(), "rotations", handler.ghostRotations());
    }

    /// @dev Per message: MessageDelivered at most once; the recipient saw it at most once; Delivered exactly
    /// when the recipient recorded it once (and one MessageDelivered was logged), never otherwise.
    function invariant_perMessage() public view {
        uint256 n = handler.messageCount();
        for (uint256 i; i < n; ++i) {
            bytes32 id = handler.idAt(i);
            ICrossChainRelay.Message memory m = handler.messageAt(i);
            uint256 logs = handler.deliveredLogs(id);
            uint256 seen = RelayRecipientMock(m.recipient).timesReceived(id);
            assertLe(logs, 1, "MessageDelivered more than once");
            assertLe(seen, 1, "the recipient saw a message twice");
            ICrossChainRelay.MessageStatus status = CrossChainRelay(m.dstRelay).messageStatus(id);
            if (status == ICrossChainRelay.MessageStatus.Delivered) {
                assertEq(seen, 1, "Delivered but not received once");
                assertEq(logs, 1, "Delivered without exactly one MessageDelivered");
            } else {
                assertEq(seen, 0, "received but not Delivered");
                assertEq(logs, 0, "MessageDelivered for a message not Delivered");
            }
            // nothing is delivered on its source relay
            assertEq(uint8(CrossChainRelay(m.srcRelay).messageStatus(id)), 0);
        }
    }

    /// @dev Statuses only move None->Delivered, None->Failed, Failed->Delivered.
    function invariant_statusTransitions() public view {
        assertEq(handler.ghostIllegalTransitions(), 0);
        assertEq(handler.ghostRetryOfNonFailedAccepted(), 0);
    }

    /// @dev Invalid signature sets and duplicates never pass.
    function invariant_noInvalidOrDuplicateDelivery() public view {
        assertEq(handler.ghostInvalidAccepted(), 0, "an invalid signature set was accepted");
        assertEq(handler.ghostDuplicateAccepted(), 0, "a processed message was delivered again");
    }

    /// @dev Deliveries from a source chain never exceed capacity + elapsed * refill / 3600.
    function invariant_bucketBound() public view {
        uint256 elapsed = block.timestamp - handler.start();
        uint256 bound = handler.CAPACITY() + elapsed * handler.REFILL_PER_HOUR() / 3_600;
        assertLe(handler.tokensTaken(handler.CHAIN_A()), bound, "deliveries from A above the bucket bound");
        assertLe(handler.tokensTaken(handler.CHAIN_B()), bound, "deliveries from B above the bucket bound");
    }

    /// @dev The handler's counters agree with the chain: every successful deliver call turned a None status into
    /// Delivered or Failed, every successful retry a Failed one into Delivered.
    function invariant_countsAgree() public view {
        uint256 n = handler.messageCount();
        uint256 delivered;
        uint256 failed;
        for (uint256 i; i < n; ++i) {
            ICrossChainRelay.Message memory m = handler.messageAt(i);
            ICrossChainRelay.MessageStatus status = CrossChainRelay(m.dstRelay).messageStatus(handler.idAt(i));
            if (status == ICrossChainRelay.MessageStatus.Delivered) ++delivered;
            if (status == ICrossChainRelay.MessageStatus.Failed) ++failed;
        }
        assertEq(delivered + failed, handler.tokensTaken(handler.CHAIN_A()) + handler.tokensTaken(handler.CHAIN_B()));
        assertEq(delivered + failed, handler.ghostDelivered() + handler.ghostFailed());
        // a successful retry turns one Failed into one Delivered
        assertEq(delivered, handler.ghostDelivered() + handler.ghostRetried());
        assertEq(failed, handler.ghostFailed() - handler.ghostRetried());
    }
}
