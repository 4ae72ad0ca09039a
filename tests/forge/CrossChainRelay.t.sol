// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Vm} from "forge-std/Vm.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {CrossChainRelay} from "../../contracts/CrossChainRelay.sol";
import {RelayRecipient} from "../../contracts/RelayRecipient.sol";
import {RelayRecipientMock} from "../../contracts/mocks/RelayRecipientMock.sol";
import {ICrossChainRelay} from "../../interfaces/ICrossChainRelay.sol";
import {MessageCopy, RelayTest} from "./utils/RelayTest.sol";

/// @notice Unit suite of CrossChainRelay: every external function's success path and every revert, with the
/// exact custom-error arguments. Chains are simulated with vm.chainId (see RelayTest).
contract CrossChainRelayTest is RelayTest {
    using MessageCopy for ICrossChainRelay.Message;

    bytes internal constant PAYLOAD = hex"c0ffee0102";

    // ================================================================== constructor and constants

    function test_constructor_setsEverything() public {
        _on(relayB);
        assertEq(relayB.owner(), relayOwner);
        assertEq(relayB.guardian(), guardian);
        (address[] memory validators, uint8 threshold, uint64 epoch) = relayB.validatorSet();
        assertEq(validators, _addrs(validatorPks));
        assertEq(threshold, THRESHOLD);
        assertEq(epoch, 1);
        assertEq(relayB.VERSION(), 1);
        assertEq(relayB.MAX_VALIDATORS(), 32);
        assertEq(relayB.MAX_GAS_LIMIT(), 5_000_000);
        assertEq(relayB.MAX_PAYLOAD_BYTES(), 8_192);
        assertEq(relayB.MAX_RETURN_BYTES(), 256);
        assertEq(relayB.CALL_RESERVE(), 15_000);
        assertEq(relayB.nextNonce(), 0);
        assertFalse(relayB.paused());
        (, string memory name, string memory version, uint256 chainId, address verifying,,) = relayB.eip712Domain();
        assertEq(name, "thingledger CrossChainRelay");
        assertEq(version, "1");
        assertEq(chainId, CHAIN_B);
        assertEq(verifying, address(relayB));
    }

    function test_constructor_emitsValidatorSetAndGuardian() public {
        address[] memory validators = _addrs(validatorPks);
        vm.expectEmit();
        emit ICrossChainRelay.GuardianChanged(address(0), guardian);
        vm.expectEmit();
        emit ICrossChainRelay.ValidatorSetChanged(1, validators, 2);
        new CrossChainRelay(relayOwner, guardian, validators, 2);
    }

    function test_constructor_revertsOnInvalidValidatorSet() public {
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.InvalidValidatorSet.selector, 0, 0));
        new CrossChainRelay(relayOwner, guardian, new address[](0), 0);
        address[] memory validators = _addrs(validatorPks);
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.InvalidValidatorSet.selector, 3, 1));
        new CrossChainRelay(relayOwner, guardian, validators, 1);
    }

    function test_constructor_revertsOnZeroOwner() public {
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableInvalidOwner.selector, address(0)));
        new CrossChainRelay(address(0), guardian, _addrs(validatorPks), 2);
    }

    function test_constructor_allowsNoGuardian() public {
        CrossChainRelay relay = new CrossChainRelay(relayOwner, address(0), _addrs(validatorPks), 2);
        assertEq(relay.guardian(), address(0));
    }

    // ================================================================== send

    function test_send_emitsTheWholeMessageAndIncrementsTheNonce() public {
        _on(relayA);
        ICrossChainRelay.Message memory m = _expectedMessage(relayA, sender, relayB, address(recipient), GAS, PAYLOAD);
        assertEq(m.nonce, 0);
        bytes32 id = _messageId(m);
        vm.expectEmit(address(relayA));
        emit ICrossChainRelay.MessageSent(id, CHAIN_B, sender, m);
        vm.prank(sender);
        assertEq(relayA.send(CHAIN_B, address(recipient), GAS, PAYLOAD), id);
        assertEq(relayA.nextNonce(), 1);

        // the next message gets nonce 1 and another id, whichever allowed sender sends it
        _allowSender(relayA, stranger);
        ICrossChainRelay.Message memory m2 = _expectedMessage(relayA, stranger, relayC, address(0xBEEF), 0, "");
        assertEq(m2.nonce, 1);
        vm.expectEmit(address(relayA));
        emit ICrossChainRelay.MessageSent(_messageId(m2), CHAIN_C, stranger, m2);
        vm.prank(stranger);
        bytes32 id2 = relayA.send(CHAIN_C, address(0xBEEF), 0, "");
        assertEq(id2, _messageId(m2));
        assertTrue(id2 != id);
        assertEq(relayA.nextNonce(), 2);
    }

    function test_send_idHasNoBlockData() public {
        // The same message fields give the same id in another block and at another time (reorg safety).
        _on(relayA);
        ICrossChainRelay.Message memory m = _expectedMessage(relayA, sender, relayB, address(recipient), GAS, PAYLOAD);
        uint256 snap = vm.snapshotState();
        vm.prank(sender);
        bytes32 id1 = relayA.send(CHAIN_B, address(recipient), GAS, PAYLOAD);
        vm.revertToState(snap);
        vm.roll(block.number + 7);
        vm.warp(block.timestamp + 1 days);
        vm.prank(sender);
        bytes32 id2 = relayA.send(CHAIN_B, address(recipient), GAS, PAYLOAD);
        assertEq(id1, id2);
        assertEq(id1, _messageId(m));
    }

    function test_send_acceptsTheLimits() public {
        _sendFrom(sender, relayA, relayB, address(recipient), 5_000_000, new bytes(8_192));
    }

    function test_send_revertsOnSenderNotAllowed() public {
        _on(relayA);
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.SenderNotAllowed.selector, stranger));
        vm.prank(stranger);
        relayA.send(CHAIN_B, address(recipient), GAS, PAYLOAD);
        // allowed on another relay only: still refused here
        _allowSender(relayB, stranger);
        _on(relayA);
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.SenderNotAllowed.selector, stranger));
        vm.prank(stranger);
        relayA.send(CHAIN_B, address(recipient), GAS, PAYLOAD);
        assertEq(relayA.nextNonce(), 0);
    }

    function test_setSenderAllowed() public {
        _on(relayA);
        assertFalse(relayA.isSenderAllowed(stranger));
        assertTrue(relayA.isSenderAllowed(sender));
        vm.expectEmit(address(relayA));
        emit ICrossChainRelay.SenderAllowed(stranger, true);
        vm.prank(relayOwner);
        relayA.setSenderAllowed(stranger, true);
        assertTrue(relayA.isSenderAllowed(stranger));
        vm.prank(stranger);
        relayA.send(CHAIN_B, address(recipient), GAS, PAYLOAD);

        vm.expectEmit(address(relayA));
        emit ICrossChainRelay.SenderAllowed(stranger, false);
        vm.prank(relayOwner);
        relayA.setSenderAllowed(stranger, false);
        assertFalse(relayA.isSenderAllowed(stranger));
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.SenderNotAllowed.selector, stranger));
        vm.prank(stranger);
        relayA.send(CHAIN_B, address(recipient), GAS, PAYLOAD);

        vm.expectRevert(ICrossChainRelay.ZeroAddress.selector);
        vm.prank(relayOwner);
        relayA.setSenderAllowed(address(0), true);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, stranger));
        vm.prank(stranger);
        relayA.setSenderAllowed(stranger, true);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, guardian));
        vm.prank(guardian);
        relayA.setSenderAllowed(stranger, true);
    }

    function test_send_revertsOnUnknownDestination() public {
        _on(relayA);
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.UnknownDestination.selector, uint64(4242)));
        vm.prank(sender);
        relayA.send(4242, address(recipient), GAS, PAYLOAD);
    }

    function test_send_revertsOnZeroRecipient() public {
        _on(relayA);
        vm.expectRevert(ICrossChainRelay.ZeroAddress.selector);
        vm.prank(sender);
        relayA.send(CHAIN_B, address(0), GAS, PAYLOAD);
    }

    function test_send_revertsOnGasLimitTooHigh() public {
        _on(relayA);
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.GasLimitTooHigh.selector, 5_000_001, 5_000_000));
        vm.prank(sender);
        relayA.send(CHAIN_B, address(recipient), 5_000_001, PAYLOAD);
    }

    function test_send_revertsOnPayloadTooLarge() public {
        _on(relayA);
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.PayloadTooLarge.selector, 8_193, 8_192));
        vm.prank(sender);
        relayA.send(CHAIN_B, address(recipient), GAS, new bytes(8_193));
    }

    function test_send_revertsWhilePaused() public {
        _on(relayA);
        vm.prank(guardian);
        relayA.pause();
        vm.expectRevert(Pausable.EnforcedPause.selector);
        vm.prank(sender);
        relayA.send(CHAIN_B, address(recipient), GAS, PAYLOAD);
        assertEq(relayA.nextNonce(), 0);
    }

    function test_send_revertsAfterRemoveRemote() public {
        _on(relayA);
        vm.prank(relayOwner);
        relayA.removeRemote(CHAIN_B);
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.UnknownDestination.selector, CHAIN_B));
        vm.prank(sender);
        relayA.send(CHAIN_B, address(recipient), GAS, PAYLOAD);
    }

    // ================================================================== deliver: happy path

    function test_deliver_happyPath() public {
        ICrossChainRelay.Message memory m = _send(PAYLOAD);
        bytes32 id = _messageId(m);
        bytes memory sigs = _sigs(m);
        _on(relayB);
        assertEq(relayB.deliveryDigest(m), _deliveryDigest(m), "deliveryDigest != independent hash");
        assertEq(relayB.messageId(m), id, "messageId != independent hash");
        assertEq(uint8(relayB.messageStatus(id)), uint8(ICrossChainRelay.MessageStatus.None));

        vm.recordLogs();
        vm.expectEmit(address(relayB));
        emit ICrossChainRelay.MessageDelivered(id, CHAIN_A, address(recipient));
        (bytes32 got, bool success) = _deliver(relayB, m, sigs);
        Vm.Log[] memory logs = vm.getRecordedLogs();

        assertEq(got, id);
        assertTrue(success);
        assertEq(uint8(relayB.messageStatus(id)), uint8(ICrossChainRelay.MessageStatus.Delivered));
        assertEq(_countLogs(logs, address(relayB), MESSAGE_DELIVERED_TOPIC, id), 1, "MessageDelivered once");
        assertEq(_countLogs(logs, address(relayB), MESSAGE_FAILED_TOPIC, id), 0);
        // the recipient got exactly (id, srcChainId, sender, payload), once
        assertEq(recipient.timesReceived(id), 1);
        assertEq(recipient.received(), 1);
        assertEq(recipient.lastId(), id);
        assertEq(recipient.lastSrcChainId(), CHAIN_A);
        assertEq(recipient.lastSender(), sender);
        assertEq(recipient.lastPayload(), PAYLOAD);
        // the source relay does not know it (statuses are per destination)
        assertEq(uint8(relayA.messageStatus(id)), 0);
    }

    function test_deliver_withAllValidatorsSigning() public {
        ICrossChainRelay.Message memory m = _send(PAYLOAD);
        (, bool success) = _deliver(relayB, m, _signMessage(m, validatorPks));
        assertTrue(success);
    }

    function test_deliver_messagesNeedNotArriveInNonceOrder() public {
        ICrossChainRelay.Message memory m0 = _send("first");
        ICrossChainRelay.Message memory m1 = _send("second");
        (, bool ok1) = _deliver(relayB, m1, _sigs(m1));
        (, bool ok0) = _deliver(relayB, m0, _sigs(m0));
        assertTrue(ok0 && ok1);
        assertEq(recipient.received(), 2);
    }

    function test_deliver_fromBToA() public {
        vm.chainId(CHAIN_A);
        RelayRecipientMock onA = new RelayRecipientMock(address(relayA));
        onA.setTrusted(CHAIN_B, sender, true);
        ICrossChainRelay.Message memory m = _sendFrom(sender, relayB, relayA, address(onA), GAS, PAYLOAD);
        assertEq(m.srcChainId, CHAIN_B);
        (bytes32 id, bool success) = _deliver(relayA, m, _sigs(m));
        assertTrue(success);
        assertEq(onA.timesReceived(id), 1);
        assertEq(onA.lastSrcChainId(), CHAIN_B);
    }

    function test_deliver_32Validators() public {
        uint256[] memory keys = new uint256[](32);
        for (uint256 i; i < 32; ++i) {
            keys[i] = _pk(uint256(keccak256(abi.encode("big set", i))));
        }
        keys = _sortByAddress(keys);
        _on(relayB);
        vm.prank(relayOwner);
        relayB.setValidators(_addrs(keys), 17);
        ICrossChainRelay.Message memory m = _send(PAYLOAD);
        (, bool success) = _deliver(relayB, m, _signMessage(m, keys));
        assertTrue(success);
    }

    // ================================================================== deliver: signatures

    function test_deliver_revertsOnForgedSignature() public {
        uint256 forger = _pk(uint256(keccak256("forger")));
        ICrossChainRelay.Message memory m = _send(PAYLOAD);
        uint256[] memory signers = _sortByAddress(_two(validatorPks[0], forger));
        uint256 index = signers[0] == forger ? 0 : 1;
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.NotValidator.selector, index, vm.addr(forger)));
        _deliver(relayB, m, _signDigestBy(_deliveryDigest(m), signers));

        // two forgers: the first one is named
        uint256 forger2 = _pk(uint256(keccak256("forger 2")));
        signers = _sortByAddress(_two(forger, forger2));
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.NotValidator.selector, 0, vm.addr(signers[0])));
        _deliver(relayB, m, _signDigestBy(_deliveryDigest(m), signers));
    }

    /// @dev The signatures of the original message, presented with a tampered one: signature 0 recovers to an
    /// unrelated address, which the relay names in NotValidator.
    function _expectTamperedRefused(ICrossChainRelay.Message memory original, ICrossChainRelay.Message memory tampered)
        internal
    {
        bytes memory sigs = _sigs(original);
        address garbage = _recoverSig(_deliveryDigest(tampered), _sigAt(sigs, 0));
        assertTrue(garbage != address(0) && garbage != vm.addr(validatorPks[0]));
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.NotValidator.selector, 0, garbage));
        _deliver(relayB, tampered, sigs);
        // the original still goes through
        (bytes32 id, bool success) = _deliver(relayB, original, sigs);
        assertTrue(success);
        assertEq(recipient.timesReceived(id), 1);
        assertEq(uint8(relayB.messageStatus(_messageId(tampered))), 0);
    }

    function test_deliver_revertsOnTamperedPayload() public {
        ICrossChainRelay.Message memory m = _send(PAYLOAD);
        ICrossChainRelay.Message memory t = m.copy();
        t.payload = hex"c0ffee0103";
        _expectTamperedRefused(m, t);
    }

    function test_deliver_revertsOnTamperedRecipient() public {
        ICrossChainRelay.Message memory m = _send(PAYLOAD);
        _on(relayB);
        RelayRecipientMock other = new RelayRecipientMock(address(relayB));
        other.setTrusted(CHAIN_A, sender, true);
        ICrossChainRelay.Message memory t = m.copy();
        t.recipient = address(other);
        _expectTamperedRefused(m, t);
        assertEq(other.received(), 0);
    }

    function test_deliver_revertsOnTamperedGasLimit() public {
        ICrossChainRelay.Message memory m = _send(PAYLOAD);
        ICrossChainRelay.Message memory t = m.copy();
        t.gasLimit = 21_000;
        _expectTamperedRefused(m, t);
    }

    function test_deliver_revertsOnTamperedNonce() public {
        ICrossChainRelay.Message memory m = _send(PAYLOAD);
        ICrossChainRelay.Message memory t = m.copy();
        t.nonce = 1;
        _expectTamperedRefused(m, t);
    }

    function test_deliver_revertsOnTamperedSender() public {
        ICrossChainRelay.Message memory m = _send(PAYLOAD);
        ICrossChainRelay.Message memory t = m.copy();
        t.sender = stranger;
        _expectTamperedRefused(m, t);
    }

    function test_deliver_revertsOnTooFewSignatures() public {
        ICrossChainRelay.Message memory m = _send(PAYLOAD);
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.TooFewSignatures.selector, 1, 2));
        _deliver(relayB, m, _signMessage(m, _one(validatorPks[1])));
    }

    function test_deliver_revertsOnZeroSignatures() public {
        ICrossChainRelay.Message memory m = _send(PAYLOAD);
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.TooFewSignatures.selector, 0, 2));
        _deliver(relayB, m, "");
    }

    function test_deliver_revertsOnDuplicateSigner() public {
        ICrossChainRelay.Message memory m = _send(PAYLOAD);
        bytes memory one = _signMessage(m, _one(validatorPks[0]));
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.SignersNotAscending.selector, 1));
        _deliver(relayB, m, bytes.concat(one, one));
        // a duplicate after a valid pair is refused too (at its own index)
        bytes memory two = _signMessage(m, _two(validatorPks[0], validatorPks[1]));
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.SignersNotAscending.selector, 2));
        _deliver(relayB, m, bytes.concat(two, _sigAt(two, 1)));
    }

    function test_deliver_revertsOnUnsortedSigners() public {
        ICrossChainRelay.Message memory m = _send(PAYLOAD);
        // validatorPks is ascending; present it descending
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.SignersNotAscending.selector, 1));
        _deliver(relayB, m, _signDigestBy(_deliveryDigest(m), _two(validatorPks[1], validatorPks[0])));
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.SignersNotAscending.selector, 2));
        _deliver(
            relayB, m, _signDigestBy(_deliveryDigest(m), _three(validatorPks[0], validatorPks[2], validatorPks[1]))
        );
    }

    function test_deliver_revertsOnHighS() public {
        ICrossChainRelay.Message memory m = _send(PAYLOAD);
        bytes memory sigs = _sigs(m);
        // the malleated twin recovers to the same signer with ecrecover, but is refused
        bytes memory twin = _malleate(_sigAt(sigs, 0));
        assertEq(_recoverSig(_deliveryDigest(m), twin), vm.addr(validatorPks[0]));
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.InvalidSignature.selector, 0));
        _deliver(relayB, m, bytes.concat(twin, _sigAt(sigs, 1)));
        twin = _malleate(_sigAt(sigs, 1));
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.InvalidSignature.selector, 1));
        _deliver(relayB, m, bytes.concat(_sigAt(sigs, 0), twin));
    }

    function test_deliver_revertsOnBadV() public {
        ICrossChainRelay.Message memory m = _send(PAYLOAD);
        bytes memory sigs = _sigs(m);
        uint8[4] memory bad = [0, 1, 29, 255];
        for (uint256 k; k < bad.length; ++k) {
            bytes memory copy = bytes.concat(sigs);
            copy[65 + 64] = bytes1(bad[k]);
            vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.InvalidSignature.selector, 1));
            _deliver(relayB, m, copy);
        }
    }

    function test_deliver_revertsOnZeroSignatureBytes() public {
        ICrossChainRelay.Message memory m = _send(PAYLOAD);
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.InvalidSignature.selector, 0));
        _deliver(relayB, m, new bytes(130));
    }

    function test_deliver_revertsOnMalformedSignatures() public {
        ICrossChainRelay.Message memory m = _send(PAYLOAD);
        bytes memory sigs = _sigs(m);
        // short: one signature cut to 64 bytes
        bytes memory short = new bytes(64);
        for (uint256 i; i < 64; ++i) {
            short[i] = sigs[i];
        }
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.MalformedSignatures.selector, 64));
        _deliver(relayB, m, short);
        // odd length: two signatures and one stray byte
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.MalformedSignatures.selector, 131));
        _deliver(relayB, m, bytes.concat(sigs, hex"1b"));
        // more than 32 signatures
        bytes memory many = new bytes(65 * 33);
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.MalformedSignatures.selector, 65 * 33));
        _deliver(relayB, m, many);
    }

    // ================================================================== deliver: replay and routing

    function test_deliver_revertsOnReplaySameChain() public {
        ICrossChainRelay.Message memory m = _send(PAYLOAD);
        bytes memory sigs = _sigs(m);
        (bytes32 id,) = _deliver(relayB, m, sigs);
        vm.expectRevert(
            abi.encodeWithSelector(
                ICrossChainRelay.AlreadyProcessed.selector, id, ICrossChainRelay.MessageStatus.Delivered
            )
        );
        _deliver(relayB, m, sigs);
        // with other valid signers as well
        vm.expectRevert(
            abi.encodeWithSelector(
                ICrossChainRelay.AlreadyProcessed.selector, id, ICrossChainRelay.MessageStatus.Delivered
            )
        );
        _deliver(relayB, m, _signMessage(m, _two(validatorPks[1], validatorPks[2])));
        assertEq(recipient.timesReceived(id), 1);
    }

    function test_deliver_revertsOnReplayOfAFailedMessage() public {
        recipient.setMode(RelayRecipientMock.Mode.Revert);
        ICrossChainRelay.Message memory m = _send(PAYLOAD);
        bytes memory sigs = _sigs(m);
        (bytes32 id, bool success) = _deliver(relayB, m, sigs);
        assertFalse(success);
        recipient.setMode(RelayRecipientMock.Mode.Accept);
        vm.expectRevert(
            abi.encodeWithSelector(
                ICrossChainRelay.AlreadyProcessed.selector, id, ICrossChainRelay.MessageStatus.Failed
            )
        );
        _deliver(relayB, m, sigs);
    }

    function test_deliver_revertsOnReplayOntoAThirdChain() public {
        ICrossChainRelay.Message memory m = _send(PAYLOAD);
        bytes memory sigs = _sigs(m);
        _deliver(relayB, m, sigs);
        // C trusts A, yet a message for B is refused there, even with signatures in C's own domain
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.WrongDestination.selector, CHAIN_B, address(relayB)));
        _deliver(relayC, m, sigs);
        bytes memory sigsForC = _signDigestBy(_deliveryDigestAt(m, CHAIN_C, address(relayC)), _two(pool[0], pool[1]));
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.WrongDestination.selector, CHAIN_B, address(relayB)));
        _deliver(relayC, m, sigsForC);
    }

    function test_deliver_revertsOnReplayOntoASecondRelayOnTheSameChain() public {
        ICrossChainRelay.Message memory m = _send(PAYLOAD);
        bytes memory sigs = _sigs(m);
        _deliver(relayB, m, sigs);
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.WrongDestination.selector, CHAIN_B, address(relayB)));
        _deliver(relayB2, m, sigs);
        // re-addressing the message to B2 changes what was signed
        ICrossChainRelay.Message memory t = m.copy();
        t.dstRelay = address(relayB2);
        address garbage = _recoverSig(_deliveryDigestAt(t, CHAIN_B, address(relayB2)), _sigAt(sigs, 0));
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.NotValidator.selector, 0, garbage));
        _deliver(relayB2, t, sigs);
    }

    function test_deliver_revertsOnWrongChainBeforeDelivery() public {
        // never delivered anywhere: B's message presented to B2 and C first
        ICrossChainRelay.Message memory m = _send(PAYLOAD);
        bytes memory sigs = _sigs(m);
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.WrongDestination.selector, CHAIN_B, address(relayB)));
        _deliver(relayB2, m, sigs);
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.WrongDestination.selector, CHAIN_B, address(relayB)));
        _deliver(relayC, m, sigs);
        // relay B at the wrong chain id (a fork with another id) refuses it too
        vm.chainId(4444);
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.WrongDestination.selector, CHAIN_B, address(relayB)));
        relayB.deliver(m, sigs);
    }

    function test_deliver_revertsOnUntrustedSourceRelay() public {
        // a second relay on chain A, not the one B trusts
        address[] memory validators = _addrs(validatorPks);
        CrossChainRelay rogue = _deployRelay(CHAIN_A, validators, THRESHOLD);
        _setRemote(rogue, CHAIN_B, address(relayB));
        _allowSender(rogue, sender);
        ICrossChainRelay.Message memory m = _sendFrom(sender, rogue, relayB, address(recipient), GAS, PAYLOAD);
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.UntrustedSource.selector, CHAIN_A, address(rogue)));
        _deliver(relayB, m, _sigs(m));
    }

    function test_deliver_revertsOnUntrustedSourceChain() public {
        // C sends to B, but B trusts no relay on C
        ICrossChainRelay.Message memory m = _sendFrom(sender, relayC, relayB, address(recipient), GAS, PAYLOAD);
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.UntrustedSource.selector, CHAIN_C, address(relayC)));
        _deliver(relayB, m, _sigs(m));
    }

    function test_deliver_revertsOnUnsupportedVersion() public {
        ICrossChainRelay.Message memory m = _send(PAYLOAD);
        m.version = 2;
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.UnsupportedVersion.selector, uint8(2)));
        _deliver(relayB, m, _sigs(m));
        m.version = 0;
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.UnsupportedVersion.selector, uint8(0)));
        _deliver(relayB, m, _sigs(m));
    }

    // ================================================================== deliver: validator rotation

    function test_deliver_afterRotation() public {
        ICrossChainRelay.Message memory m = _send(PAYLOAD);
        // epoch 2: pool[2] (kept), pool[3], pool[4]
        uint256[] memory next = _three(pool[2], pool[3], pool[4]);
        _on(relayB);
        vm.expectEmit(address(relayB));
        emit ICrossChainRelay.ValidatorSetChanged(2, _addrs(next), 2);
        vm.prank(relayOwner);
        relayB.setValidators(_addrs(next), 2);
        (address[] memory v, uint8 t, uint64 epoch) = relayB.validatorSet();
        assertEq(v, _addrs(next));
        assertEq(t, 2);
        assertEq(epoch, 2);
        assertFalse(relayB.isValidator(vm.addr(pool[0])));
        assertFalse(relayB.isValidator(vm.addr(pool[1])));
        assertTrue(relayB.isValidator(vm.addr(pool[2])));
        assertTrue(relayB.isValidator(vm.addr(pool[3])));

        // old-epoch signatures, however many, are refused
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.NotValidator.selector, 0, vm.addr(pool[0])));
        _deliver(relayB, m, _signMessage(m, _two(pool[0], pool[1])));
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.NotValidator.selector, 0, vm.addr(pool[0])));
        _deliver(relayB, m, _signMessage(m, _three(pool[0], pool[1], pool[2])));
        // a kept validator with a removed one: the removed one is named
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.NotValidator.selector, 0, vm.addr(pool[1])));
        _deliver(relayB, m, _signMessage(m, _two(pool[1], pool[2])));
        // a kept validator with a new one: accepted
        (, bool success) = _deliver(relayB, m, _signMessage(m, _two(pool[2], pool[3])));
        assertTrue(success);
        // only new ones: accepted
        ICrossChainRelay.Message memory m2 = _send("2");
        (, success) = _deliver(relayB, m2, _signMessage(m2, _two(pool[3], pool[4])));
        assertTrue(success);
    }

    function test_deliver_validatorRemovedThenReadded() public {
        _on(relayB);
        vm.startPrank(relayOwner);
        relayB.setValidators(_addrs(_three(pool[3], pool[4], pool[5])), 2);
        relayB.setValidators(_addrs(_three(pool[0], pool[4], pool[5])), 2);
        vm.stopPrank();
        assertTrue(relayB.isValidator(vm.addr(pool[0])));
        assertFalse(relayB.isValidator(vm.addr(pool[3])));
        ICrossChainRelay.Message memory m = _send(PAYLOAD);
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.NotValidator.selector, 1, vm.addr(pool[3])));
        _deliver(relayB, m, _signMessage(m, _two(pool[0], pool[3])));
        (, bool success) = _deliver(relayB, m, _signMessage(m, _two(pool[0], pool[5])));
        assertTrue(success);
    }

    function test_deliver_thresholdRaisedByRotation() public {
        _on(relayB);
        vm.prank(relayOwner);
        relayB.setValidators(_addrs(validatorPks), 3);
        ICrossChainRelay.Message memory m = _send(PAYLOAD);
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.TooFewSignatures.selector, 2, 3));
        _deliver(relayB, m, _sigs(m));
        (, bool success) = _deliver(relayB, m, _signMessage(m, validatorPks));
        assertTrue(success);
    }

    // ================================================================== deliver: failing recipients

    function test_deliver_revertingRecipientFailsWithItsReason() public {
        recipient.setMode(RelayRecipientMock.Mode.Revert);
        ICrossChainRelay.Message memory m = _send(PAYLOAD);
        bytes32 id = _messageId(m);
        bytes memory reason = abi.encodeWithSelector(RelayRecipientMock.Refused.selector, PAYLOAD);
        vm.recordLogs();
        vm.expectEmit(address(relayB));
        emit ICrossChainRelay.MessageFailed(id, CHAIN_A, address(recipient), reason);
        (bytes32 got, bool success) = _deliver(relayB, m, _sigs(m));
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertEq(got, id);
        assertFalse(success);
        assertEq(uint8(relayB.messageStatus(id)), uint8(ICrossChainRelay.MessageStatus.Failed));
        assertEq(_countLogs(logs, address(relayB), MESSAGE_DELIVERED_TOPIC, id), 0);
        assertEq(_countLogs(logs, address(relayB), MESSAGE_FAILED_TOPIC, id), 1);
        assertEq(recipient.timesReceived(id), 0);

        // other messages are not held up: another recipient now, and the same one once it accepts again
        _on(relayB);
        RelayRecipientMock other = new RelayRecipientMock(address(relayB));
        other.setTrusted(CHAIN_A, sender, true);
        ICrossChainRelay.Message memory m2 = _sendFrom(sender, relayA, relayB, address(other), GAS, "other");
        (, bool ok2) = _deliver(relayB, m2, _sigs(m2));
        assertTrue(ok2);
        recipient.setMode(RelayRecipientMock.Mode.Accept);
        ICrossChainRelay.Message memory m3 = _send("later");
        (bytes32 id3, bool ok3) = _deliver(relayB, m3, _sigs(m3));
        assertTrue(ok3);
        assertEq(recipient.timesReceived(id3), 1);
        assertEq(uint8(relayB.messageStatus(id)), uint8(ICrossChainRelay.MessageStatus.Failed));
    }

    function test_deliver_untrustedSenderFailsAtTheRecipient() public {
        _allowSender(relayA, stranger); // allowed to use the relay, but not trusted by the recipient
        ICrossChainRelay.Message memory m = _sendFrom(stranger, relayA, relayB, address(recipient), GAS, PAYLOAD);
        bytes32 id = _messageId(m);
        vm.expectEmit(address(relayB));
        emit ICrossChainRelay.MessageFailed(
            id,
            CHAIN_A,
            address(recipient),
            abi.encodeWithSelector(RelayRecipient.UntrustedSender.selector, CHAIN_A, stranger)
        );
        (, bool success) = _deliver(relayB, m, _sigs(m));
        assertFalse(success);
    }

    function test_deliver_recipientWithoutCodeFails() public {
        address eoa = makeAddr("no code");
        ICrossChainRelay.Message memory m = _sendFrom(sender, relayA, relayB, eoa, GAS, PAYLOAD);
        bytes32 id = _messageId(m);
        vm.expectEmit(address(relayB));
        emit ICrossChainRelay.MessageFailed(
            id, CHAIN_A, eoa, abi.encodeWithSelector(ICrossChainRelay.RecipientNotContract.selector, eoa)
        );
        (, bool success) = _deliver(relayB, m, _sigs(m));
        assertFalse(success);
        assertEq(uint8(relayB.messageStatus(id)), uint8(ICrossChainRelay.MessageStatus.Failed));

        // retry while it still has no code: RetryFailed with the same reason
        vm.expectRevert(
            abi.encodeWithSelector(
                ICrossChainRelay.RetryFailed.selector,
                id,
                abi.encodeWithSelector(ICrossChainRelay.RecipientNotContract.selector, eoa)
            )
        );
        relayB.retry(m, GAS);

        // code appears at that address (e.g. a CREATE2 deployment): a retry by anyone delivers it
        deployCodeTo("RelayRecipientMock.sol:RelayRecipientMock", abi.encode(address(relayB)), eoa);
        RelayRecipientMock(eoa).setTrusted(CHAIN_A, sender, true);
        vm.expectEmit(address(relayB));
        emit ICrossChainRelay.MessageDelivered(id, CHAIN_A, eoa);
        vm.prank(stranger);
        relayB.retry(m, GAS);
        assertEq(uint8(relayB.messageStatus(id)), uint8(ICrossChainRelay.MessageStatus.Delivered));
        assertEq(RelayRecipientMock(eoa).timesReceived(id), 1);
    }

    function test_deliver_recipientBurningAllItsGasFails() public {
        recipient.setMode(RelayRecipientMock.Mode.BurnGas);
        ICrossChainRelay.Message memory m = _send(PAYLOAD);
        bytes32 id = _messageId(m);
        vm.expectEmit(address(relayB));
        emit ICrossChainRelay.MessageFailed(id, CHAIN_A, address(recipient), "");
        bytes memory sigs = _sigs(m);
        _on(relayB);
        uint256 before = gasleft();
        vm.prank(relayer);
        (, bool success) = relayB.deliver(m, sigs);
        uint256 used = before - gasleft();
        assertFalse(success);
        assertEq(uint8(relayB.messageStatus(id)), uint8(ICrossChainRelay.MessageStatus.Failed));
        // the recipient burnt its gas limit and not more than that plus the relay's own work
        assertGe(used, GAS);
        assertLt(used, uint256(GAS) + 120_000);
    }

    function test_deliver_returnBombIsNotCopied() public {
        // Two fresh recipients, each receiving its first message after a warm-up delivery: the only difference
        // between the two deliveries is the recipient's 100,000-byte return.
        _on(relayB);
        RelayRecipientMock warm = _newRecipientB();
        RelayRecipientMock accepts = _newRecipientB();
        RelayRecipientMock bomb = _newRecipientB();
        bomb.setMode(RelayRecipientMock.Mode.ReturnBomb);
        ICrossChainRelay.Message memory m0 = _sendFrom(sender, relayA, relayB, address(warm), GAS, PAYLOAD);
        ICrossChainRelay.Message memory m1 = _sendFrom(sender, relayA, relayB, address(accepts), GAS, PAYLOAD);
        ICrossChainRelay.Message memory m2 = _sendFrom(sender, relayA, relayB, address(bomb), GAS, PAYLOAD);
        bytes memory s1 = _sigs(m1);
        bytes memory s2 = _sigs(m2);
        _deliver(relayB, m0, _sigs(m0));

        _on(relayB);
        uint256 g = gasleft();
        (, bool ok1) = relayB.deliver(m1, s1);
        uint256 gasAccept = g - gasleft();
        g = gasleft();
        (, bool ok2) = relayB.deliver(m2, s2);
        uint256 gasBomb = g - gasleft();

        assertTrue(ok1);
        assertTrue(ok2, "a return bomb is a success");
        assertEq(uint8(relayB.messageStatus(_messageId(m2))), uint8(ICrossChainRelay.MessageStatus.Delivered));
        assertEq(bomb.timesReceived(_messageId(m2)), 1);
        // The bomb's own memory (100,000 bytes) costs it about 28,600 gas inside its gas limit; copying it in
        // the relay would cost the relay at least as much again (memory) plus 9,400 (copy).
        emit log_named_uint("deliver gas, accepting recipient", gasAccept);
        emit log_named_uint("deliver gas, return bomb", gasBomb);
        assertLt(gasBomb, gasAccept + 35_000, "the relay pays for the returned data");
    }

    function test_deliver_revertBombReasonIsCapped() public {
        _on(relayB);
        RelayRecipientMock warm = _newRecipientB();
        RelayRecipientMock refuses = _newRecipientB();
        RelayRecipientMock bomb = _newRecipientB();
        refuses.setMode(RelayRecipientMock.Mode.Revert);
        bomb.setMode(RelayRecipientMock.Mode.RevertBomb);
        ICrossChainRelay.Message memory m0 = _sendFrom(sender, relayA, relayB, address(warm), GAS, PAYLOAD);
        ICrossChainRelay.Message memory m1 = _sendFrom(sender, relayA, relayB, address(refuses), GAS, PAYLOAD);
        ICrossChainRelay.Message memory m2 = _sendFrom(sender, relayA, relayB, address(bomb), GAS, PAYLOAD);
        bytes32 id2 = _messageId(m2);
        bytes memory s1 = _sigs(m1);
        bytes memory s2 = _sigs(m2);
        _deliver(relayB, m0, _sigs(m0));

        bytes memory capped = _first256OfDirectRevert(bomb, id2);
        // the same direct call to the other recipient, so both are equally warm when measured
        vm.prank(address(relayB));
        (bool direct,) = address(refuses).call(abi.encodeCall(refuses.receiveMessage, (id2, CHAIN_A, sender, PAYLOAD)));
        assertFalse(direct);

        _on(relayB);
        uint256 g = gasleft();
        (, bool ok1) = relayB.deliver(m1, s1);
        uint256 gasRevert = g - gasleft();
        vm.recordLogs();
        g = gasleft();
        (, bool ok2) = relayB.deliver(m2, s2);
        uint256 gasBomb = g - gasleft();
        bytes memory reason = _failedReason(vm.getRecordedLogs(), id2);

        assertFalse(ok1);
        assertFalse(ok2);
        assertEq(uint8(relayB.messageStatus(id2)), uint8(ICrossChainRelay.MessageStatus.Failed));
        assertEq(reason.length, 256, "reason capped at MAX_RETURN_BYTES");
        assertEq(reason, capped, "reason is the first 256 bytes of the revert data");
        emit log_named_uint("deliver gas, short revert", gasRevert);
        emit log_named_uint("deliver gas, revert bomb", gasBomb);
        // 256 bytes kept (and logged) instead of 100,000: the bomb's own memory (~28,600) plus a few hundred
        // bytes of log data
        assertLt(gasBomb, gasRevert + 35_000, "the relay pays for the whole revert data");

        // retrying it: RetryFailed carries the same capped reason
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.RetryFailed.selector, id2, capped));
        relayB.retry(m2, GAS);
    }

    /// @dev The first 256 of the 100,000 bytes `bomb` reverts with when the relay calls it for `id`.
    function _first256OfDirectRevert(RelayRecipientMock bomb, bytes32 id) internal returns (bytes memory capped) {
        _on(relayB);
        vm.prank(address(relayB));
        (bool direct, bytes memory full) =
            address(bomb).call{gas: GAS}(abi.encodeCall(bomb.receiveMessage, (id, CHAIN_A, sender, PAYLOAD)));
        assertFalse(direct);
        assertEq(full.length, 100_000);
        capped = new bytes(256);
        for (uint256 i; i < 256; ++i) {
            capped[i] = full[i];
        }
    }

    /// @dev The reason of relay B's only MessageFailed log for `id` among `logs`.
    function _failedReason(Vm.Log[] memory logs, bytes32 id) internal view returns (bytes memory reason) {
        uint256 found;
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter == address(relayB) && logs[i].topics[0] == MESSAGE_FAILED_TOPIC) {
                assertEq(logs[i].topics[1], id);
                reason = abi.decode(logs[i].data, (bytes));
                ++found;
            }
        }
        assertEq(found, 1, "one MessageFailed");
    }

    function _newRecipientB() internal returns (RelayRecipientMock r) {
        _on(relayB);
        r = new RelayRecipientMock(address(relayB));
        r.setTrusted(CHAIN_A, sender, true);
    }

    // ================================================================== deliver: gas

    function test_deliver_underGassedIsRefusedAndTheRecipientGetsItsGasLimit() public {
        uint32 gasLimit = 500_000;
        ICrossChainRelay.Message memory m = _sendFrom(sender, relayA, relayB, address(recipient), gasLimit, PAYLOAD);
        bytes32 id = _messageId(m);
        bytes memory data = abi.encodeCall(relayB.deliver, (m, _sigs(m)));
        uint256 required = uint256(gasLimit) + gasLimit / 63 + 15_000;
        _on(relayB);

        uint256 hi = _smallestDeliveringGas(data, required);

        // just below: InsufficientGas, naming exactly the required gas and what was left
        (bool okBelow, bytes memory err) = _tryDeliverWithGas(data, hi - 1);
        assertFalse(okBelow);
        assertEq(bytes4(err), ICrossChainRelay.InsufficientGas.selector, "under-gassed: not InsufficientGas");
        (uint256 available, uint256 req) = abi.decode(_tail(err, 4), (uint256, uint256));
        assertEq(req, required);
        assertLt(available, required);
        assertGt(available + 200, required, "available far below required at the boundary");
        _checkDeliveredWithGas(data, hi, id, gasLimit);
    }

    /// @dev Delivers with exactly `g` gas: delivered, and the recipient started with (almost) its whole limit.
    function _checkDeliveredWithGas(bytes memory data, uint256 g, bytes32 id, uint32 gasLimit) internal {
        (bool okAt,) = address(relayB).call{gas: g}(data);
        assertTrue(okAt);
        assertEq(uint8(relayB.messageStatus(id)), uint8(ICrossChainRelay.MessageStatus.Delivered));
        assertEq(recipient.timesReceived(id), 1);
        uint256 seen = recipient.lastGasLeft();
        emit log_named_uint("gas limit", gasLimit);
        emit log_named_uint("recipient's gasleft() at its start", seen);
        emit log_named_uint("smallest outer gas that delivers", g);
        assertLe(seen, gasLimit);
        assertGe(seen, uint256(gasLimit) - 5_000, "the recipient was starved");
    }

    function test_deliver_underGassedWithTheExpectedError() public {
        ICrossChainRelay.Message memory m = _send(PAYLOAD);
        bytes memory sigs = _sigs(m);
        _on(relayB);
        uint256 required = uint256(GAS) + GAS / 63 + 15_000;
        vm.expectPartialRevert(ICrossChainRelay.InsufficientGas.selector);
        relayB.deliver{gas: required}(m, sigs);
        assertEq(uint8(relayB.messageStatus(_messageId(m))), 0, "an under-gassed delivery left a trace");
        (, bool success) = _deliver(relayB, m, sigs);
        assertTrue(success);
    }

    /// @dev The smallest gas with which a call of `data` on relay B succeeds (binary search, state restored).
    function _smallestDeliveringGas(bytes memory data, uint256 required) internal returns (uint256 hi) {
        uint256 lo = required; // fails: the relay spends gas before its check
        hi = required + 200_000; // succeeds
        (bool okLo,) = _tryDeliverWithGas(data, lo);
        (bool okHi,) = _tryDeliverWithGas(data, hi);
        assertFalse(okLo);
        assertTrue(okHi);
        while (hi - lo > 1) {
            uint256 mid = (lo + hi) / 2;
            (bool ok,) = _tryDeliverWithGas(data, mid);
            if (ok) hi = mid;
            else lo = mid;
        }
    }

    function _tryDeliverWithGas(bytes memory data, uint256 g) internal returns (bool ok, bytes memory ret) {
        uint256 snap = vm.snapshotState();
        (ok, ret) = address(relayB).call{gas: g}(data);
        vm.revertToState(snap);
    }

    function _tail(bytes memory b, uint256 from) internal pure returns (bytes memory out) {
        out = new bytes(b.length - from);
        for (uint256 i; i < out.length; ++i) {
            out[i] = b[from + i];
        }
    }

    // ================================================================== deliver: re-entrancy

    function test_deliver_reentrantDeliverOfTheSameMessageIsRefused() public {
        ICrossChainRelay.Message memory m = _sendFrom(sender, relayA, relayB, address(recipient), 1_000_000, PAYLOAD);
        bytes32 id = _messageId(m);
        bytes memory sigs = _sigs(m);
        recipient.setMode(RelayRecipientMock.Mode.Reenter);
        recipient.setReentry(abi.encodeCall(ICrossChainRelay.deliver, (m, sigs)));
        vm.recordLogs();
        (, bool success) = _deliver(relayB, m, sigs);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertTrue(success, "outer delivery");
        assertFalse(recipient.reentrySucceeded());
        assertEq(
            recipient.reentryResult(),
            abi.encodeWithSelector(
                ICrossChainRelay.AlreadyProcessed.selector, id, ICrossChainRelay.MessageStatus.Delivered
            )
        );
        assertEq(recipient.timesReceived(id), 1);
        assertEq(_countLogs(logs, address(relayB), MESSAGE_DELIVERED_TOPIC, id), 1);
        assertEq(uint8(relayB.messageStatus(id)), uint8(ICrossChainRelay.MessageStatus.Delivered));
    }

    function test_deliver_reentrantRetryOfTheSameMessageIsRefused() public {
        ICrossChainRelay.Message memory m = _sendFrom(sender, relayA, relayB, address(recipient), 1_000_000, PAYLOAD);
        bytes32 id = _messageId(m);
        recipient.setMode(RelayRecipientMock.Mode.Reenter);
        recipient.setReentry(abi.encodeCall(ICrossChainRelay.retry, (m, 1_000_000)));
        (, bool success) = _deliver(relayB, m, _sigs(m));
        assertTrue(success);
        assertFalse(recipient.reentrySucceeded());
        assertEq(
            recipient.reentryResult(),
            abi.encodeWithSelector(ICrossChainRelay.NotFailed.selector, id, ICrossChainRelay.MessageStatus.Delivered)
        );
        assertEq(recipient.timesReceived(id), 1);
    }

    /// @dev Documented behaviour: a recipient may deliver ANOTHER valid message from inside its own delivery
    /// (nothing guards deliver against re-entry as such; each message is still processed once).
    function test_deliver_reentrantDeliverOfAnotherMessageIsAllowed() public {
        RelayRecipientMock other = _newRecipientB();
        ICrossChainRelay.Message memory m = _sendFrom(sender, relayA, relayB, address(recipient), 1_000_000, PAYLOAD);
        ICrossChainRelay.Message memory m2 = _sendFrom(sender, relayA, relayB, address(other), GAS, "inner");
        bytes32 id = _messageId(m);
        bytes32 id2 = _messageId(m2);
        recipient.setMode(RelayRecipientMock.Mode.Reenter);
        recipient.setReentry(abi.encodeCall(ICrossChainRelay.deliver, (m2, _sigs(m2))));
        vm.recordLogs();
        (, bool success) = _deliver(relayB, m, _sigs(m));
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertTrue(success);
        assertTrue(recipient.reentrySucceeded());
        assertEq(recipient.reentryResult(), abi.encode(id2, true));
        assertEq(other.timesReceived(id2), 1);
        assertEq(recipient.timesReceived(id), 1);
        assertEq(uint8(relayB.messageStatus(id2)), uint8(ICrossChainRelay.MessageStatus.Delivered));
        assertEq(_countLogs(logs, address(relayB), MESSAGE_DELIVERED_TOPIC, id), 1);
        assertEq(_countLogs(logs, address(relayB), MESSAGE_DELIVERED_TOPIC, id2), 1);
        // and it cannot be delivered again afterwards
        vm.expectRevert(
            abi.encodeWithSelector(
                ICrossChainRelay.AlreadyProcessed.selector, id2, ICrossChainRelay.MessageStatus.Delivered
            )
        );
        _deliver(relayB, m2, _sigs(m2));
    }

    // ================================================================== retry

    function _failed(bytes memory payload) internal returns (ICrossChainRelay.Message memory m, bytes32 id) {
        recipient.setMode(RelayRecipientMock.Mode.Revert);
        m = _send(payload);
        bool success;
        (id, success) = _deliver(relayB, m, _sigs(m));
        assertFalse(success);
        recipient.setMode(RelayRecipientMock.Mode.Accept);
    }

    function test_retry_byAnyoneAfterTheRecipientIsFixed() public {
        (ICrossChainRelay.Message memory m, bytes32 id) = _failed(PAYLOAD);
        _on(relayB);
        vm.recordLogs();
        vm.expectEmit(address(relayB));
        emit ICrossChainRelay.MessageDelivered(id, CHAIN_A, address(recipient));
        vm.prank(stranger);
        assertEq(relayB.retry(m, GAS), id);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertEq(_countLogs(logs, address(relayB), MESSAGE_DELIVERED_TOPIC, id), 1);
        assertEq(uint8(relayB.messageStatus(id)), uint8(ICrossChainRelay.MessageStatus.Delivered));
        assertEq(recipient.timesReceived(id), 1);
        assertEq(recipient.lastPayload(), PAYLOAD);
        assertEq(recipient.lastSender(), sender);

        // a second retry: NotFailed
        vm.expectRevert(
            abi.encodeWithSelector(ICrossChainRelay.NotFailed.selector, id, ICrossChainRelay.MessageStatus.Delivered)
        );
        relayB.retry(m, GAS);
    }

    function test_retry_doesNotTakeARateLimitToken() public {
        (ICrossChainRelay.Message memory m,) = _failed(PAYLOAD);
        _setRemote(relayB, CHAIN_A, address(relayA), 1, 1);
        (uint256 tokens,) = relayB.rateLimitTokens(CHAIN_A);
        assertEq(tokens, 1);
        relayB.retry(m, GAS);
        (tokens,) = relayB.rateLimitTokens(CHAIN_A);
        assertEq(tokens, 1);
    }

    function test_retry_withMoreGasThanTheMessageAsked() public {
        // gas limit too small for the recipient's writes: Failed (out of gas), then retried with more
        ICrossChainRelay.Message memory m = _sendFrom(sender, relayA, relayB, address(recipient), 30_000, PAYLOAD);
        (bytes32 id, bool success) = _deliver(relayB, m, _sigs(m));
        assertFalse(success);
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.RetryFailed.selector, id, ""));
        relayB.retry(m, 30_000);
        relayB.retry(m, 300_000);
        assertEq(uint8(relayB.messageStatus(id)), uint8(ICrossChainRelay.MessageStatus.Delivered));
    }

    function test_retry_revertsOnNotFailed() public {
        ICrossChainRelay.Message memory m = _send(PAYLOAD);
        bytes32 id = _messageId(m);
        _on(relayB);
        vm.expectRevert(
            abi.encodeWithSelector(ICrossChainRelay.NotFailed.selector, id, ICrossChainRelay.MessageStatus.None)
        );
        relayB.retry(m, GAS);
        _deliver(relayB, m, _sigs(m));
        vm.expectRevert(
            abi.encodeWithSelector(ICrossChainRelay.NotFailed.selector, id, ICrossChainRelay.MessageStatus.Delivered)
        );
        relayB.retry(m, GAS);
    }

    function test_retry_revertsOnGasBelowTheMessage() public {
        (ICrossChainRelay.Message memory m,) = _failed(PAYLOAD);
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.RetryGasBelowMessage.selector, GAS - 1, GAS));
        relayB.retry(m, GAS - 1);
    }

    function test_retry_revertsOnGasLimitTooHigh() public {
        (ICrossChainRelay.Message memory m,) = _failed(PAYLOAD);
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.GasLimitTooHigh.selector, 5_000_001, 5_000_000));
        relayB.retry(m, 5_000_001);
    }

    function test_retry_thatFailsAgainKeepsItFailed() public {
        (ICrossChainRelay.Message memory m, bytes32 id) = _failed(PAYLOAD);
        recipient.setMode(RelayRecipientMock.Mode.Revert);
        vm.expectRevert(
            abi.encodeWithSelector(
                ICrossChainRelay.RetryFailed.selector,
                id,
                abi.encodeWithSelector(RelayRecipientMock.Refused.selector, PAYLOAD)
            )
        );
        relayB.retry(m, GAS);
        assertEq(uint8(relayB.messageStatus(id)), uint8(ICrossChainRelay.MessageStatus.Failed));
        recipient.setMode(RelayRecipientMock.Mode.Accept);
        relayB.retry(m, GAS);
        assertEq(uint8(relayB.messageStatus(id)), uint8(ICrossChainRelay.MessageStatus.Delivered));
    }

    function test_retry_revertsOnUntrustedSourceAfterRemoveRemote() public {
        (ICrossChainRelay.Message memory m, bytes32 id) = _failed(PAYLOAD);
        _on(relayB);
        vm.prank(relayOwner);
        relayB.removeRemote(CHAIN_A);
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.UntrustedSource.selector, CHAIN_A, address(relayA)));
        relayB.retry(m, GAS);
        // another relay trusted for A does not make it retryable either
        _setRemote(relayB, CHAIN_A, address(relayB2));
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.UntrustedSource.selector, CHAIN_A, address(relayA)));
        relayB.retry(m, GAS);
        // trusting A again does
        _setRemote(relayB, CHAIN_A, address(relayA));
        relayB.retry(m, GAS);
        assertEq(uint8(relayB.messageStatus(id)), uint8(ICrossChainRelay.MessageStatus.Delivered));
    }

    function test_retry_underGassed() public {
        (ICrossChainRelay.Message memory m,) = _failed(PAYLOAD);
        uint32 retryGas = 1_000_000;
        uint256 required = uint256(retryGas) + retryGas / 63 + 15_000;
        (bool ok, bytes memory err) = address(relayB).call{gas: required}(abi.encodeCall(relayB.retry, (m, retryGas)));
        assertFalse(ok);
        assertEq(bytes4(err), ICrossChainRelay.InsufficientGas.selector);
        (uint256 available, uint256 req) = abi.decode(_tail(err, 4), (uint256, uint256));
        assertEq(req, required);
        assertLt(available, required);
    }

    // ================================================================== pause

    function test_pause_byGuardianAndOwner_unpauseOnlyOwner() public {
        _on(relayB);
        vm.expectEmit(address(relayB));
        emit Pausable.Paused(guardian);
        vm.prank(guardian);
        relayB.pause();
        assertTrue(relayB.paused());
        // pausing twice
        vm.expectRevert(Pausable.EnforcedPause.selector);
        vm.prank(relayOwner);
        relayB.pause();
        // the guardian cannot unpause
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, guardian));
        vm.prank(guardian);
        relayB.unpause();
        vm.expectEmit(address(relayB));
        emit Pausable.Unpaused(relayOwner);
        vm.prank(relayOwner);
        relayB.unpause();
        assertFalse(relayB.paused());
        vm.expectRevert(Pausable.ExpectedPause.selector);
        vm.prank(relayOwner);
        relayB.unpause();
        // the owner pauses too
        vm.prank(relayOwner);
        relayB.pause();
        assertTrue(relayB.paused());
    }

    function test_pause_revertsForOthers() public {
        _on(relayB);
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.NotGuardian.selector, stranger));
        vm.prank(stranger);
        relayB.pause();
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.NotGuardian.selector, relayer));
        vm.prank(relayer);
        relayB.pause();
        vm.prank(relayOwner);
        relayB.pause();
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, stranger));
        vm.prank(stranger);
        relayB.unpause();
    }

    function test_pause_refusesDeliverAndRetry() public {
        (ICrossChainRelay.Message memory failed, bytes32 failedId) = _failed("failed");
        ICrossChainRelay.Message memory m = _send(PAYLOAD);
        bytes memory sigs = _sigs(m);
        _on(relayB);
        vm.prank(guardian);
        relayB.pause();
        vm.expectRevert(Pausable.EnforcedPause.selector);
        _deliver(relayB, m, sigs);
        vm.expectRevert(Pausable.EnforcedPause.selector);
        relayB.retry(failed, GAS);
        vm.prank(relayOwner);
        relayB.unpause();
        (, bool success) = _deliver(relayB, m, sigs);
        assertTrue(success);
        relayB.retry(failed, GAS);
        assertEq(uint8(relayB.messageStatus(failedId)), uint8(ICrossChainRelay.MessageStatus.Delivered));
    }

    function test_pause_withoutGuardianOnlyOwner() public {
        _on(relayB);
        vm.prank(relayOwner);
        relayB.setGuardian(address(0));
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.NotGuardian.selector, guardian));
        vm.prank(guardian);
        relayB.pause();
        vm.prank(relayOwner);
        relayB.pause();
        assertTrue(relayB.paused());
    }

    // ================================================================== rate limit

    /// @dev A fresh message from A to the recipient, signed.
    function _next() internal returns (ICrossChainRelay.Message memory m, bytes memory sigs) {
        m = _send(abi.encode(relayA.nextNonce()));
        sigs = _sigs(m);
    }

    function _deliverNext() internal {
        (ICrossChainRelay.Message memory m, bytes memory sigs) = _next();
        (, bool success) = _deliver(relayB, m, sigs);
        assertTrue(success);
    }

    function _expectRateLimited(uint256 retryAfter) internal {
        (ICrossChainRelay.Message memory m, bytes memory sigs) = _next();
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.RateLimited.selector, CHAIN_A, retryAfter));
        _deliver(relayB, m, sigs);
        (uint256 available, uint256 nextTokenIn) = relayB.rateLimitTokens(CHAIN_A);
        assertEq(available, 0);
        assertEq(nextTokenIn, retryAfter);
    }

    function test_rateLimit_capacityThenRefill() public {
        _setRemote(relayB, CHAIN_A, address(relayA), 3, 10); // a token every 360 s
        (uint256 available, uint256 nextTokenIn) = relayB.rateLimitTokens(CHAIN_A);
        assertEq(available, 3);
        assertEq(nextTokenIn, 0);
        for (uint256 i; i < 3; ++i) {
            _deliverNext();
        }
        _expectRateLimited(360);
        vm.warp(block.timestamp + 100);
        _expectRateLimited(260);
        vm.warp(block.timestamp + 259);
        _expectRateLimited(1);
        vm.warp(block.timestamp + 1);
        (available, nextTokenIn) = relayB.rateLimitTokens(CHAIN_A);
        assertEq(available, 1);
        assertEq(nextTokenIn, 360, "next token after this one");
        _deliverNext();
        _expectRateLimited(360);
        // a long wait refills up to the capacity, not beyond
        vm.warp(block.timestamp + 10 hours);
        (available, nextTokenIn) = relayB.rateLimitTokens(CHAIN_A);
        assertEq(available, 3);
        assertEq(nextTokenIn, 0);
        for (uint256 i; i < 3; ++i) {
            _deliverNext();
        }
        _expectRateLimited(360);
    }

    function test_rateLimit_retryAfterRoundsUp() public {
        _setRemote(relayB, CHAIN_A, address(relayA), 1, 7); // 3600/7 = 514.28 s per token
        _deliverNext();
        _expectRateLimited(515);
        vm.warp(block.timestamp + 514); // 3,598 of 3,600
        _expectRateLimited(1);
        vm.warp(block.timestamp + 1);
        _deliverNext();
    }

    function test_rateLimit_failedDeliveriesTakeATokenToo() public {
        _setRemote(relayB, CHAIN_A, address(relayA), 1, 1);
        recipient.setMode(RelayRecipientMock.Mode.Revert);
        (ICrossChainRelay.Message memory m, bytes memory sigs) = _next();
        (, bool success) = _deliver(relayB, m, sigs);
        assertFalse(success);
        _expectRateLimited(3_600);
    }

    function test_rateLimit_isPerSourceChain() public {
        _setRemote(relayB, CHAIN_A, address(relayA), 1, 1);
        _setRemote(relayB, CHAIN_C, address(relayC), 1, 1);
        recipient.setTrusted(CHAIN_C, sender, true);
        _deliverNext();
        _expectRateLimited(3_600);
        ICrossChainRelay.Message memory fromC = _sendFrom(sender, relayC, relayB, address(recipient), GAS, PAYLOAD);
        (, bool success) = _deliver(relayB, fromC, _sigs(fromC));
        assertTrue(success);
    }

    function test_rateLimit_capacityChangeKeepsTokensCapped() public {
        _setRemote(relayB, CHAIN_A, address(relayA), 3, 10);
        _deliverNext(); // 2 left
        // lowering the capacity caps the tokens
        vm.expectEmit(address(relayB));
        emit ICrossChainRelay.RemoteSet(CHAIN_A, address(relayA), 1, 10);
        _setRemote(relayB, CHAIN_A, address(relayA), 1, 10);
        (uint256 available,) = relayB.rateLimitTokens(CHAIN_A);
        assertEq(available, 1);
        _deliverNext();
        _expectRateLimited(360);
        // raising it keeps the (empty) bucket: no free burst
        _setRemote(relayB, CHAIN_A, address(relayA), 5, 3_600);
        _expectRateLimited(1);
        vm.warp(block.timestamp + 2);
        (available,) = relayB.rateLimitTokens(CHAIN_A);
        assertEq(available, 2);
        ICrossChainRelay.Remote memory r = relayB.remote(CHAIN_A);
        assertEq(r.relay, address(relayA));
        assertEq(r.capacity, 5);
        assertEq(r.refillPerHour, 3_600);
    }

    function test_rateLimit_partialTokensSurviveALimitChange() public {
        _setRemote(relayB, CHAIN_A, address(relayA), 1, 10);
        _deliverNext();
        vm.warp(block.timestamp + 180); // half a token at the old rate
        _setRemote(relayB, CHAIN_A, address(relayA), 1, 20); // the other half in 90 s at the new rate
        _expectRateLimited(90);
        vm.warp(block.timestamp + 90);
        _deliverNext();
    }

    function test_rateLimit_newRelayOrRemoveAndReaddFillsTheBucket() public {
        _setRemote(relayB, CHAIN_A, address(relayA), 2, 1);
        _deliverNext();
        _deliverNext();
        _expectRateLimited(3_600);
        // removed: untrusted, and rateLimitTokens says nothing
        _on(relayB);
        vm.expectEmit(address(relayB));
        emit ICrossChainRelay.RemoteRemoved(CHAIN_A);
        vm.prank(relayOwner);
        relayB.removeRemote(CHAIN_A);
        (uint256 available, uint256 nextTokenIn) = relayB.rateLimitTokens(CHAIN_A);
        assertEq(available, 0);
        assertEq(nextTokenIn, 0);
        ICrossChainRelay.Remote memory r = relayB.remote(CHAIN_A);
        assertEq(r.relay, address(0));
        assertEq(r.capacity, 0);
        assertEq(r.refillPerHour, 0);
        (ICrossChainRelay.Message memory m, bytes memory sigs) = _next();
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.UntrustedSource.selector, CHAIN_A, address(relayA)));
        _deliver(relayB, m, sigs);
        // re-added: a full bucket (the owner's choice)
        _setRemote(relayB, CHAIN_A, address(relayA), 2, 1);
        (available,) = relayB.rateLimitTokens(CHAIN_A);
        assertEq(available, 2);
        (, bool success) = _deliver(relayB, m, sigs);
        assertTrue(success);
        // another relay for the chain: a new, full bucket
        _setRemote(relayB, CHAIN_A, address(relayB2), 2, 1);
        (available,) = relayB.rateLimitTokens(CHAIN_A);
        assertEq(available, 2);
    }

    // ================================================================== administration

    function test_setValidators_reverts() public {
        _on(relayB);
        address[] memory three = _addrs(validatorPks);
        vm.startPrank(relayOwner);
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.InvalidValidatorSet.selector, 0, 1));
        relayB.setValidators(new address[](0), 1);
        address[] memory many = new address[](33);
        for (uint256 i; i < 33; ++i) {
            many[i] = address(uint160(0x1000 + i));
        }
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.InvalidValidatorSet.selector, 33, 17));
        relayB.setValidators(many, 17);
        // not a majority
        address[] memory four = _addrs(_four(pool[0], pool[1], pool[2], pool[3]));
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.InvalidValidatorSet.selector, 4, 2));
        relayB.setValidators(four, 2);
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.InvalidValidatorSet.selector, 3, 1));
        relayB.setValidators(three, 1);
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.InvalidValidatorSet.selector, 3, 0));
        relayB.setValidators(three, 0);
        // more than the count
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.InvalidValidatorSet.selector, 3, 4));
        relayB.setValidators(three, 4);
        // duplicate, anywhere
        address[] memory dup = _addrs(_three(pool[3], pool[4], pool[3]));
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.DuplicateValidator.selector, vm.addr(pool[3])));
        relayB.setValidators(dup, 2);
        // a current validator listed twice in the next set
        dup = _addrs(_three(pool[0], pool[0], pool[4]));
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.DuplicateValidator.selector, vm.addr(pool[0])));
        relayB.setValidators(dup, 2);
        address[] memory zero = _addrs(_three(pool[3], pool[4], pool[5]));
        zero[1] = address(0);
        vm.expectRevert(ICrossChainRelay.ZeroAddress.selector);
        relayB.setValidators(zero, 2);
        vm.stopPrank();
        // nothing changed
        (address[] memory v, uint8 t, uint64 epoch) = relayB.validatorSet();
        assertEq(v, three);
        assertEq(t, 2);
        assertEq(epoch, 1);
        assertTrue(relayB.isValidator(vm.addr(pool[0])));
        assertFalse(relayB.isValidator(vm.addr(pool[3])));
    }

    function test_setValidators_limitsAccepted() public {
        _on(relayB);
        address[] memory full = new address[](32);
        for (uint256 i; i < 32; ++i) {
            full[i] = address(uint160(0x1000 + i));
        }
        vm.startPrank(relayOwner);
        relayB.setValidators(full, 17);
        relayB.setValidators(full, 32);
        address[] memory one = new address[](1);
        one[0] = vm.addr(pool[5]);
        relayB.setValidators(one, 1);
        vm.stopPrank();
        (address[] memory v, uint8 t, uint64 epoch) = relayB.validatorSet();
        assertEq(v, one);
        assertEq(t, 1);
        assertEq(epoch, 4);
        assertFalse(relayB.isValidator(address(0x1000)));
        ICrossChainRelay.Message memory m = _send(PAYLOAD);
        (, bool success) = _deliver(relayB, m, _signMessage(m, _one(pool[5])));
        assertTrue(success);
    }

    function test_setValidators_onlyOwner() public {
        _on(relayB);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, guardian));
        vm.prank(guardian);
        relayB.setValidators(_addrs(validatorPks), 2);
    }

    function test_setRemote_successAndReverts() public {
        _on(relayB);
        vm.expectEmit(address(relayB));
        emit ICrossChainRelay.RemoteSet(CHAIN_C, address(relayC), 7, 9);
        vm.prank(relayOwner);
        relayB.setRemote(CHAIN_C, address(relayC), 7, 9);
        ICrossChainRelay.Remote memory r = relayB.remote(CHAIN_C);
        assertEq(r.relay, address(relayC));
        assertEq(r.capacity, 7);
        assertEq(r.refillPerHour, 9);
        (uint256 available, uint256 nextTokenIn) = relayB.rateLimitTokens(CHAIN_C);
        assertEq(available, 7);
        assertEq(nextTokenIn, 0);

        vm.startPrank(relayOwner);
        vm.expectRevert(ICrossChainRelay.ZeroAddress.selector);
        relayB.setRemote(CHAIN_C, address(0), 7, 9);
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.InvalidRateLimit.selector, 0, 9));
        relayB.setRemote(CHAIN_C, address(relayC), 0, 9);
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.InvalidRateLimit.selector, 7, 0));
        relayB.setRemote(CHAIN_C, address(relayC), 7, 0);
        vm.stopPrank();
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, stranger));
        vm.prank(stranger);
        relayB.setRemote(CHAIN_C, address(relayC), 7, 9);
    }

    function test_setRemote_largestLimits() public {
        _setRemote(relayB, CHAIN_A, address(relayA), type(uint32).max, type(uint32).max);
        // the same relay: the tokens it had are kept, not topped up to the new capacity
        (uint256 available,) = relayB.rateLimitTokens(CHAIN_A);
        assertEq(available, CAPACITY);
        _deliverNext();
        vm.warp(block.timestamp + 100 * 365 days);
        (available,) = relayB.rateLimitTokens(CHAIN_A);
        assertEq(available, type(uint32).max);
        _deliverNext();
    }

    function test_removeRemote_reverts() public {
        _on(relayB);
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.UnknownDestination.selector, CHAIN_C));
        vm.prank(relayOwner);
        relayB.removeRemote(CHAIN_C);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, guardian));
        vm.prank(guardian);
        relayB.removeRemote(CHAIN_A);
        vm.prank(relayOwner);
        relayB.removeRemote(CHAIN_A);
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.UnknownDestination.selector, CHAIN_A));
        vm.prank(relayOwner);
        relayB.removeRemote(CHAIN_A);
    }

    function test_setGuardian() public {
        _on(relayB);
        address next = makeAddr("next guardian");
        vm.expectEmit(address(relayB));
        emit ICrossChainRelay.GuardianChanged(guardian, next);
        vm.prank(relayOwner);
        relayB.setGuardian(next);
        assertEq(relayB.guardian(), next);
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.NotGuardian.selector, guardian));
        vm.prank(guardian);
        relayB.pause();
        vm.prank(next);
        relayB.pause();
        assertTrue(relayB.paused());
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, next));
        vm.prank(next);
        relayB.setGuardian(next);
    }

    function test_renounceOwnership_disabled() public {
        _on(relayB);
        vm.expectRevert(ICrossChainRelay.RenounceDisabled.selector);
        vm.prank(relayOwner);
        relayB.renounceOwnership();
        assertEq(relayB.owner(), relayOwner);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, stranger));
        vm.prank(stranger);
        relayB.renounceOwnership();
    }

    function test_ownable2Step() public {
        _on(relayB);
        address newOwner = makeAddr("new owner");
        vm.prank(relayOwner);
        relayB.transferOwnership(newOwner);
        assertEq(relayB.owner(), relayOwner);
        assertEq(relayB.pendingOwner(), newOwner);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, stranger));
        vm.prank(stranger);
        relayB.acceptOwnership();
        vm.prank(newOwner);
        relayB.acceptOwnership();
        assertEq(relayB.owner(), newOwner);
        assertEq(relayB.pendingOwner(), address(0));
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, relayOwner));
        vm.prank(relayOwner);
        relayB.setGuardian(stranger);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, relayOwner));
        vm.prank(relayOwner);
        relayB.unpause();
        vm.prank(newOwner);
        relayB.setGuardian(stranger);
        assertEq(relayB.guardian(), stranger);
        // the new owner may pause, the old one may not
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.NotGuardian.selector, relayOwner));
        vm.prank(relayOwner);
        relayB.pause();
        vm.prank(newOwner);
        relayB.pause();
    }

    // ================================================================== views

    function test_views() public {
        _on(relayB);
        assertTrue(relayB.isValidator(vm.addr(pool[0])));
        assertTrue(relayB.isValidator(vm.addr(pool[2])));
        assertFalse(relayB.isValidator(vm.addr(pool[3])));
        assertFalse(relayB.isValidator(address(0)));
        ICrossChainRelay.Remote memory r = relayB.remote(CHAIN_A);
        assertEq(r.relay, address(relayA));
        assertEq(r.capacity, CAPACITY);
        assertEq(r.refillPerHour, REFILL_PER_HOUR);
        r = relayB.remote(77);
        assertEq(r.relay, address(0));
        (uint256 available, uint256 nextTokenIn) = relayB.rateLimitTokens(77);
        assertEq(available, 0);
        assertEq(nextTokenIn, 0);
        assertEq(relayB.guardian(), guardian);
        assertEq(relayA.nextNonce(), 0);

        ICrossChainRelay.Message memory m = _send(PAYLOAD);
        assertEq(relayA.nextNonce(), 1);
        _on(relayB);
        // messageId is the source-domain hash on any relay, deliveryDigest the hash in the asking relay's domain
        assertEq(relayB.messageId(m), _messageId(m));
        assertEq(relayC.messageId(m), _messageId(m));
        assertEq(relayB.deliveryDigest(m), _deliveryDigest(m));
        assertEq(relayB2.deliveryDigest(m), _deliveryDigestAt(m, CHAIN_B, address(relayB2)));
        vm.chainId(CHAIN_C);
        assertEq(relayC.deliveryDigest(m), _deliveryDigestAt(m, CHAIN_C, address(relayC)));
        assertTrue(_deliveryDigest(m) != _messageId(m));
    }

    function _four(uint256 a, uint256 b, uint256 c, uint256 d) internal pure returns (uint256[] memory out) {
        out = new uint256[](4);
        out[0] = a;
        out[1] = b;
        out[2] = c;
        out[3] = d;
    }
}
