// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {CrossChainRelay} from "../../contracts/CrossChainRelay.sol";
import {ICrossChainRelay} from "../../interfaces/ICrossChainRelay.sol";
import {MessageCopy, RelayTest} from "./utils/RelayTest.sol";

/// @notice Fuzz suite of CrossChainRelay: tampering, signature sets, the rate limiter against a reference
/// model, and the message hashing against the independent EIP-712 computation of RelayTest.
contract CrossChainRelayFuzzTest is RelayTest {
    using MessageCopy for ICrossChainRelay.Message;

    uint256 internal constant TOKEN = 3_600;

    // ================================================================== tampering

    /// @dev Flips one bit of one field of a signed message; the relay refuses it with the error the field
    /// calls for (the routing fields are checked before the signatures; any other field breaks them, and
    /// signature 0 then recovers to an unrelated address).
    function testFuzz_singleBitTamperingIsRefused(uint256 field, uint256 bit, bytes memory payload) public {
        if (payload.length > 128) payload = _prefix(payload, 128);
        ICrossChainRelay.Message memory m = _send(payload);
        bytes memory sigs = _sigs(m);
        ICrossChainRelay.Message memory t = m.copy();
        field = field % 10;
        bytes memory expected;
        if (field == 0) {
            t.version = m.version ^ uint8(1 << (bit % 8));
            expected = abi.encodeWithSelector(ICrossChainRelay.UnsupportedVersion.selector, t.version);
        } else if (field == 1) {
            t.nonce = m.nonce ^ uint64(1 << (bit % 64));
        } else if (field == 2) {
            t.srcChainId = m.srcChainId ^ uint64(1 << (bit % 64));
            expected = abi.encodeWithSelector(ICrossChainRelay.UntrustedSource.selector, t.srcChainId, m.srcRelay);
        } else if (field == 3) {
            t.srcRelay = address(uint160(m.srcRelay) ^ uint160(1 << (bit % 160)));
            expected = abi.encodeWithSelector(ICrossChainRelay.UntrustedSource.selector, m.srcChainId, t.srcRelay);
        } else if (field == 4) {
            t.sender = address(uint160(m.sender) ^ uint160(1 << (bit % 160)));
        } else if (field == 5) {
            t.dstChainId = m.dstChainId ^ uint64(1 << (bit % 64));
            expected = abi.encodeWithSelector(ICrossChainRelay.WrongDestination.selector, t.dstChainId, m.dstRelay);
        } else if (field == 6) {
            t.dstRelay = address(uint160(m.dstRelay) ^ uint160(1 << (bit % 160)));
            expected = abi.encodeWithSelector(ICrossChainRelay.WrongDestination.selector, m.dstChainId, t.dstRelay);
        } else if (field == 7) {
            t.recipient = address(uint160(m.recipient) ^ uint160(1 << (bit % 160)));
        } else if (field == 8) {
            t.gasLimit = m.gasLimit ^ uint32(1 << (bit % 32));
        } else if (payload.length == 0) {
            t.payload = hex"00"; // nothing to flip: one byte more
        } else {
            uint256 at = (bit >> 3) % payload.length;
            t.payload[at] = bytes1(uint8(t.payload[at]) ^ uint8(1 << (bit % 8)));
        }
        if (expected.length == 0) {
            address garbage = _recoverSig(_deliveryDigest(t), _sigAt(sigs, 0));
            expected = abi.encodeWithSelector(ICrossChainRelay.NotValidator.selector, 0, garbage);
        }
        assertTrue(_messageId(t) != _messageId(m));
        vm.expectRevert(expected);
        _deliver(relayB, t, sigs);
        assertEq(uint8(relayB.messageStatus(_messageId(t))), 0);

        (bytes32 id, bool success) = _deliver(relayB, m, sigs);
        assertTrue(success);
        assertEq(recipient.timesReceived(id), 1);
        assertEq(recipient.lastPayload(), payload);
    }

    /// @dev Flips one bit of the signatures: refused (the flipped signature is invalid, by someone else, or out
    /// of order) and nothing is recorded.
    function testFuzz_singleBitSignatureTamperingIsRefused(uint256 bit) public {
        ICrossChainRelay.Message memory m = _send("x");
        bytes memory sigs = _sigs(m);
        bit = bit % (sigs.length * 8);
        bytes memory t = bytes.concat(sigs);
        t[bit / 8] = bytes1(uint8(t[bit / 8]) ^ uint8(1 << (bit % 8)));
        _on(relayB);
        (bool ok, bytes memory err) = address(relayB).call(abi.encodeCall(relayB.deliver, (m, t)));
        assertFalse(ok, "a tampered signature was accepted");
        bytes4 sel = bytes4(err);
        assertTrue(
            sel == ICrossChainRelay.InvalidSignature.selector || sel == ICrossChainRelay.NotValidator.selector
                || sel == ICrossChainRelay.SignersNotAscending.selector,
            "unexpected error"
        );
        uint256 index = (bit / 8) / 65;
        if (sel != ICrossChainRelay.NotValidator.selector) {
            assertEq(err, abi.encodeWithSelector(sel, index));
        } else {
            (uint256 i,) = abi.decode(_tail(err, 4), (uint256, address));
            assertEq(i, index);
        }
        assertEq(uint8(relayB.messageStatus(_messageId(m))), 0);
        (, bool success) = _deliver(relayB, m, sigs);
        assertTrue(success);
    }

    // ================================================================== signature sets

    /// @dev A validator set of `n` (from 8 candidate keys) with threshold `t`, signed by any subset of the 8
    /// candidates and 3 outsiders, optionally with one signature repeated: accepted exactly when a reference
    /// check (count >= threshold, then each signer strictly above the previous and a current validator) says
    /// so, and otherwise refused with the reference's error.
    function testFuzz_signatureSets(uint256 n, uint256 t, uint256 mask, uint256 dupAt) public {
        uint256[] memory keys = new uint256[](11);
        for (uint256 i; i < 11; ++i) {
            keys[i] = _pk(uint256(keccak256(abi.encode("fuzz signer", i))));
        }
        uint256[] memory candidates = new uint256[](8);
        for (uint256 i; i < 8; ++i) {
            candidates[i] = keys[i];
        }
        n = bound(n, 1, 8);
        t = bound(t, n / 2 + 1, n);
        uint256[] memory validators = new uint256[](n);
        for (uint256 i; i < n; ++i) {
            validators[i] = candidates[i];
        }
        _on(relayB);
        vm.prank(relayOwner);
        relayB.setValidators(_addrs(validators), uint8(t));

        // the signers: a subset of the 11 keys, ascending, perhaps with one repeated in place
        mask = bound(mask, 0, (1 << 11) - 1);
        uint256[] memory chosen = new uint256[](_popcount(mask));
        uint256 c;
        for (uint256 i; i < 11; ++i) {
            if (mask & (1 << i) != 0) chosen[c++] = keys[i];
        }
        chosen = _sortByAddress(chosen);
        if (chosen.length > 0 && dupAt % 3 == 0) chosen = _withRepeat(chosen, dupAt % chosen.length);

        ICrossChainRelay.Message memory m = _send(abi.encode(mask));
        bytes memory sigs = _signDigestBy(_deliveryDigest(m), chosen);
        bytes memory expected = _referenceCheck(chosen, validators, t);
        if (expected.length == 0) {
            (bytes32 id, bool success) = _deliver(relayB, m, sigs);
            assertTrue(success);
            assertEq(recipient.timesReceived(id), 1);
        } else {
            vm.expectRevert(expected);
            _deliver(relayB, m, sigs);
        }
    }

    /// @dev The error a delivery with `signers` (in this order) should get, "" when it should pass.
    function _referenceCheck(uint256[] memory signers, uint256[] memory validators, uint256 threshold)
        internal
        pure
        returns (bytes memory)
    {
        if (signers.length < threshold) {
            return abi.encodeWithSelector(ICrossChainRelay.TooFewSignatures.selector, signers.length, threshold);
        }
        address previous;
        for (uint256 i; i < signers.length; ++i) {
            address a = vm.addr(signers[i]);
            if (a <= previous) return abi.encodeWithSelector(ICrossChainRelay.SignersNotAscending.selector, i);
            bool isValidator;
            for (uint256 k; k < validators.length; ++k) {
                if (vm.addr(validators[k]) == a) isValidator = true;
            }
            if (!isValidator) return abi.encodeWithSelector(ICrossChainRelay.NotValidator.selector, i, a);
            previous = a;
        }
        return "";
    }

    /// @dev A signature set below the threshold is refused whoever signs; with the threshold reached, one
    /// non-validator anywhere is refused (named at its index).
    function testFuzz_belowThresholdOrNonValidatorIsRefused(uint256 outsiderSeed, uint256 position) public {
        position = position % 3;
        ICrossChainRelay.Message memory m = _send("y");
        // one validator: below the threshold of 2
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.TooFewSignatures.selector, 1, 2));
        _deliver(relayB, m, _signMessage(m, _one(validatorPks[position])));
        // two validators and an outsider, sorted: the outsider is named
        uint256 outsider = _pk(outsiderSeed);
        vm.assume(outsider != pool[0] && outsider != pool[1] && outsider != pool[2]);
        uint256[] memory signers =
            _sortByAddress(_three(validatorPks[position], validatorPks[(position + 1) % 3], outsider));
        uint256 index;
        while (signers[index] != outsider) ++index;
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.NotValidator.selector, index, vm.addr(outsider)));
        _deliver(relayB, m, _signDigestBy(_deliveryDigest(m), signers));
        // an outsider and a validator: the outsider is named too
        signers = _sortByAddress(_two(validatorPks[position], outsider));
        index = signers[0] == outsider ? 0 : 1;
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.NotValidator.selector, index, vm.addr(outsider)));
        _deliver(relayB, m, _signDigestBy(_deliveryDigest(m), signers));
    }

    function _popcount(uint256 x) internal pure returns (uint256 n) {
        while (x != 0) {
            n += x & 1;
            x >>= 1;
        }
    }

    function _withRepeat(uint256[] memory a, uint256 at) internal pure returns (uint256[] memory out) {
        out = new uint256[](a.length + 1);
        uint256 j;
        for (uint256 i; i < a.length; ++i) {
            out[j++] = a[i];
            if (i == at) out[j++] = a[i];
        }
    }

    // ================================================================== rate limiter

    uint64 internal nextFreshNonce = 1_000_000;

    /// @dev A message from relay A to the recipient with a nonce no sent message has, signed.
    function _fresh() internal returns (ICrossChainRelay.Message memory m, bytes memory sigs) {
        m = ICrossChainRelay.Message({
            version: 1,
            nonce: nextFreshNonce++,
            srcChainId: CHAIN_A,
            srcRelay: address(relayA),
            sender: sender,
            dstChainId: CHAIN_B,
            dstRelay: address(relayB),
            recipient: address(recipient),
            gasLimit: GAS,
            payload: ""
        });
        sigs = _sigs(m);
    }

    struct Model {
        uint256 level; // in 1/3600 tokens
        uint256 at; // when `level` was written
        uint256 capacity;
        uint256 refill;
    }

    function _modelLevel(Model memory model) internal view returns (uint256 level) {
        level = model.level + (block.timestamp - model.at) * model.refill;
        if (level > model.capacity * TOKEN) level = model.capacity * TOKEN;
    }

    /// @dev For fuzzed (capacity, refill per hour) and a fuzzed sequence of waits and delivery attempts: each
    /// attempt succeeds or fails with RateLimited(A, retryAfter) exactly as a reference token bucket says, the
    /// retryAfter is exact (one second earlier still fails, at it a delivery passes), rateLimitTokens agrees,
    /// and the deliveries never exceed capacity + elapsed * refill / 3600.
    function testFuzz_rateLimiterMatchesTheModel(uint32 capacity, uint32 refill, uint256 seed) public {
        capacity = uint32(bound(capacity, 1, 6));
        refill = uint32(bound(refill, 1, 40_000));
        _setRemote(relayB, CHAIN_A, address(relayA), capacity, refill);
        // the same relay: the tokens it had (CAPACITY >= capacity) are kept, capped: a full bucket
        Model memory model = Model(uint256(capacity) * TOKEN, block.timestamp, capacity, refill);
        uint256 start = block.timestamp;
        uint256 perToken = (TOKEN + refill - 1) / refill;
        uint256 delivered;

        for (uint256 step; step < 10; ++step) {
            uint256 r = uint256(keccak256(abi.encode(seed, step)));
            uint256 wait = r % 3 == 0 ? 0 : (r >> 8) % (3 * perToken + 1);
            if (wait > 2 days) wait = 2 days;
            vm.warp(block.timestamp + wait);
            uint256 attempts = (r >> 64) % 4;
            for (uint256 k; k < attempts; ++k) {
                delivered += _attempt(model, (r >> (128 + k)) & 1 == 1);
                // the bound, independent of the model's bookkeeping
                assertLe(delivered, capacity + (block.timestamp - start) * refill / TOKEN, "bucket bound exceeded");
            }
        }
        _checkTokensView(model, _modelLevel(model));
    }

    /// @dev One delivery attempt checked against the model; when refused and `waitForIt`, waits exactly the
    /// retryAfter it was given (one second earlier it is still refused) and delivers. Returns the deliveries.
    function _attempt(Model memory model, bool waitForIt) internal returns (uint256 delivered) {
        uint256 level = _modelLevel(model);
        _checkTokensView(model, level);
        (ICrossChainRelay.Message memory m, bytes memory sigs) = _fresh();
        if (level < TOKEN) {
            uint256 retryAfter = (TOKEN - level + model.refill - 1) / model.refill;
            vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.RateLimited.selector, CHAIN_A, retryAfter));
            _deliver(relayB, m, sigs);
            if (!waitForIt) return 0;
            if (retryAfter > 1) {
                vm.warp(block.timestamp + retryAfter - 1);
                vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.RateLimited.selector, CHAIN_A, 1));
                _deliver(relayB, m, sigs);
            }
            vm.warp(block.timestamp + 1);
            level = _modelLevel(model);
            assertGe(level, TOKEN, "model: retryAfter too short");
        }
        (, bool success) = _deliver(relayB, m, sigs);
        assertTrue(success);
        model.level = level - TOKEN;
        model.at = block.timestamp;
        return 1;
    }

    function _checkTokensView(Model memory model, uint256 level) internal view {
        (uint256 available, uint256 nextTokenIn) = relayB.rateLimitTokens(CHAIN_A);
        assertEq(available, level / TOKEN, "rateLimitTokens: available");
        uint256 expectedNext =
            available < model.capacity ? ((available + 1) * TOKEN - level + model.refill - 1) / model.refill : 0;
        assertEq(nextTokenIn, expectedNext, "rateLimitTokens: nextTokenIn");
    }

    // ================================================================== hashing

    /// @dev messageId and deliveryDigest equal the independent EIP-712 computation for any message.
    function testFuzz_messageIdAndDigestMatchEip712(ICrossChainRelay.Message memory m) public {
        _on(relayB);
        assertEq(relayB.messageId(m), _messageId(m), "messageId");
        assertEq(relayA.messageId(m), _messageId(m), "messageId does not depend on the relay asked");
        assertEq(relayB.deliveryDigest(m), _deliveryDigestAt(m, CHAIN_B, address(relayB)), "deliveryDigest");
        assertEq(relayB2.deliveryDigest(m), _deliveryDigestAt(m, CHAIN_B, address(relayB2)), "deliveryDigest B2");
    }

    /// @dev send's id, event and nonce for fuzzed senders, recipients, gas limits and payloads.
    function testFuzz_sendIdMatchesEip712(address from, address to, uint32 gasLimit, bytes memory payload) public {
        vm.assume(to != address(0) && from != address(0) && from != address(vm));
        gasLimit = uint32(bound(gasLimit, 0, 5_000_000));
        if (payload.length > 8_192) payload = _prefix(payload, 8_192);
        _allowSender(relayA, from);
        _on(relayA);
        ICrossChainRelay.Message memory expected = _expectedMessage(relayA, from, relayB, to, gasLimit, payload);
        bytes32 id = _messageId(expected);
        vm.expectEmit(address(relayA));
        emit ICrossChainRelay.MessageSent(id, CHAIN_B, from, expected);
        vm.prank(from);
        assertEq(relayA.send(CHAIN_B, to, gasLimit, payload), id);
        assertEq(relayA.nextNonce(), expected.nonce + 1);
    }

    /// @dev A delivered message hands the recipient exactly its payload, for fuzzed payloads and gas limits.
    function testFuzz_deliverCarriesThePayload(bytes memory payload, uint32 gasLimit) public {
        if (payload.length > 256) payload = _prefix(payload, 256);
        gasLimit = uint32(bound(gasLimit, 600_000, 5_000_000));
        ICrossChainRelay.Message memory m = _sendFrom(sender, relayA, relayB, address(recipient), gasLimit, payload);
        (bytes32 id, bool success) = _deliver(relayB, m, _sigs(m));
        assertTrue(success);
        assertEq(id, _messageId(m));
        assertEq(recipient.lastPayload(), payload);
        assertEq(recipient.lastId(), id);
        assertLe(recipient.lastGasLeft(), gasLimit);
        assertGe(recipient.lastGasLeft(), uint256(gasLimit) - 5_000);
    }

    // ================================================================== helpers

    function _prefix(bytes memory b, uint256 n) internal pure returns (bytes memory out) {
        out = new bytes(n);
        for (uint256 i; i < n; ++i) {
            out[i] = b[i];
        }
    }

    function _tail(bytes memory b, uint256 from) internal pure returns (bytes memory out) {
        out = new bytes(b.length - from);
        for (uint256 i; i < out.length; ++i) {
            out[i] = b[from + i];
        }
    }
}
