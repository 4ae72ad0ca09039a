// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Vm} from "forge-std/Vm.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {CrossChainRelay} from "../../contracts/CrossChainRelay.sol";
import {DeviceMirror} from "../../contracts/DeviceMirror.sol";
import {DeviceMirrorPublisher} from "../../contracts/DeviceMirrorPublisher.sol";
import {RelayRecipient} from "../../contracts/RelayRecipient.sol";
import {RelayRecipientMock} from "../../contracts/mocks/RelayRecipientMock.sol";
import {ICrossChainRelay} from "../../interfaces/ICrossChainRelay.sol";
import {IDeviceMirror} from "../../interfaces/IDeviceMirror.sol";
import {IDeviceRegistry} from "../../interfaces/IDeviceRegistry.sol";
import {RelayTest} from "./utils/RelayTest.sol";

/// @notice RelayRecipient, DeviceMirror and DeviceMirrorPublisher: the recipient base's checks, the publisher's
/// rules, and end to end a device of chain A's DeviceRegistry mirrored to chain B's admission list.
contract DeviceMirrorTest is RelayTest {
    uint256 internal constant INTERVAL = 1 hours;
    uint256 internal constant DEVICE_PK = 0xA11CE;
    uint256 internal constant ROTATED_PK = 0xB0B0;

    DeviceMirrorPublisher internal publisher; // chain A
    DeviceMirror internal mirror; // chain B
    DeviceMirror internal mirrorC; // chain C

    address internal mirrorOwner = makeAddr("mirror owner");
    address internal publisherOwner = makeAddr("publisher owner");
    address internal alice = makeAddr("alice");
    address internal bob = makeAddr("bob");

    function setUp() public override {
        super.setUp();
        vm.chainId(CHAIN_A);
        publisher = new DeviceMirrorPublisher(IDeviceRegistry(address(registry)), relayA, publisherOwner, INTERVAL);
        _allowSender(relayA, address(publisher));

        vm.chainId(CHAIN_B);
        mirror = new DeviceMirror(address(relayB), mirrorOwner);
        vm.prank(mirrorOwner);
        mirror.setTrustedPublisher(CHAIN_A, address(publisher), true);

        vm.chainId(CHAIN_C);
        mirrorC = new DeviceMirror(address(relayC), mirrorOwner);
        vm.prank(mirrorOwner);
        mirrorC.setTrustedPublisher(CHAIN_A, address(publisher), true);

        vm.chainId(CHAIN_A);
        vm.startPrank(publisherOwner);
        publisher.setMirror(CHAIN_B, address(mirror));
        publisher.setMirror(CHAIN_C, address(mirrorC));
        vm.stopPrank();
    }

    // ================================================================== helpers

    /// @dev A device of key `pk`, provisioned on chain A, handed to `owner`, activated if asked.
    function _newDevice(uint256 pk, address owner, bool activate) internal returns (uint256) {
        vm.chainId(CHAIN_A);
        return _provisionDevice(registry, manufacturer, pk, owner, activate);
    }

    /// @dev Publishes device `deviceId` to chain `dst` as a stranger; returns the message read back from
    /// relay A's MessageSent log, checked against the registry and the publisher's event.
    function _publish(uint256 deviceId, uint64 dst) internal returns (ICrossChainRelay.Message memory m) {
        vm.chainId(CHAIN_A);
        vm.recordLogs();
        vm.prank(stranger);
        bytes32 id = publisher.publish(deviceId, dst);
        ICrossChainRelay.Message[] memory sent = _sentMessages(vm.getRecordedLogs(), address(relayA));
        assertEq(sent.length, 1, "one MessageSent");
        m = sent[0];
        assertEq(_messageId(m), id);
        assertEq(m.sender, address(publisher));
        assertEq(m.dstChainId, dst);
        assertEq(m.recipient, publisher.mirrorOf(dst));
        assertEq(m.gasLimit, publisher.MIRROR_GAS_LIMIT());
        IDeviceMirror.DeviceSnapshot memory s = abi.decode(m.payload, (IDeviceMirror.DeviceSnapshot));
        IDeviceRegistry.Device memory d = registry.getDevice(deviceId);
        assertEq(s.deviceId, deviceId);
        assertEq(s.owner, registry.ownerOf(deviceId));
        assertEq(s.key, d.key);
        assertEq(uint8(s.state), uint8(d.state));
        assertEq(publisher.lastPublishedAt(deviceId, dst), block.timestamp);
    }

    function _snapshot(ICrossChainRelay.Message memory m) internal pure returns (IDeviceMirror.DeviceSnapshot memory) {
        return abi.decode(m.payload, (IDeviceMirror.DeviceSnapshot));
    }

    /// @dev Delivers `m` on `dst` with the validators' signatures; the mirror's call must succeed.
    function _deliverOk(CrossChainRelay dst, ICrossChainRelay.Message memory m) internal {
        (bytes32 id, bool success) = _deliver(dst, m, _sigs(m));
        assertTrue(success, "the mirror's call failed");
        assertEq(uint8(dst.messageStatus(id)), uint8(ICrossChainRelay.MessageStatus.Delivered));
    }

    function _publishAndDeliver(uint256 deviceId) internal returns (ICrossChainRelay.Message memory m) {
        m = _publish(deviceId, CHAIN_B);
        _deliverOk(relayB, m);
    }

    function _assertMirrored(uint256 deviceId, address owner, address key, IDeviceRegistry.DeviceState state)
        internal
        view
    {
        IDeviceMirror.DeviceSnapshot memory s = mirror.snapshotOf(deviceId);
        assertEq(s.deviceId, deviceId);
        assertEq(s.owner, owner);
        assertEq(s.key, key);
        assertEq(uint8(s.state), uint8(state));
        bool active = state == IDeviceRegistry.DeviceState.Active;
        assertEq(mirror.isAdmitted(deviceId), active);
        assertEq(mirror.admittedDeviceOfKey(key), active ? deviceId : 0);
    }

    // ================================================================== RelayRecipient

    function test_recipient_refusesCallersOtherThanTheRelay() public {
        bytes memory payload = abi.encode(
            IDeviceMirror.DeviceSnapshot(1, alice, alice, IDeviceRegistry.DeviceState.Active, type(uint64).max)
        );
        vm.expectRevert(abi.encodeWithSelector(RelayRecipient.NotRelay.selector, stranger));
        vm.prank(stranger);
        mirror.receiveMessage(bytes32(0), CHAIN_A, address(publisher), payload);
        // another chain's relay is not this mirror's relay either
        vm.expectRevert(abi.encodeWithSelector(RelayRecipient.NotRelay.selector, address(relayB2)));
        vm.prank(address(relayB2));
        mirror.receiveMessage(bytes32(0), CHAIN_A, address(publisher), payload);
        assertFalse(mirror.isAdmitted(1));
    }

    function test_recipient_refusesUntrustedSenders() public {
        bytes memory payload =
            abi.encode(IDeviceMirror.DeviceSnapshot(1, alice, alice, IDeviceRegistry.DeviceState.Active, 1));
        vm.startPrank(address(relayB));
        vm.expectRevert(abi.encodeWithSelector(RelayRecipient.UntrustedSender.selector, CHAIN_A, stranger));
        mirror.receiveMessage(bytes32(0), CHAIN_A, stranger, payload);
        // the trusted publisher's address, but on another chain
        vm.expectRevert(abi.encodeWithSelector(RelayRecipient.UntrustedSender.selector, CHAIN_C, address(publisher)));
        mirror.receiveMessage(bytes32(0), CHAIN_C, address(publisher), payload);
        // the trusted one
        mirror.receiveMessage(bytes32(uint256(7)), CHAIN_A, address(publisher), payload);
        vm.stopPrank();
        assertTrue(mirror.isAdmitted(1));
    }

    function test_recipient_untrustedPublisherFailsThroughTheRelayThenRetried() public {
        uint256 deviceId = _newDevice(DEVICE_PK, alice, true);
        vm.chainId(CHAIN_A);
        DeviceMirrorPublisher other =
            new DeviceMirrorPublisher(IDeviceRegistry(address(registry)), relayA, publisherOwner, INTERVAL);
        vm.prank(publisherOwner);
        other.setMirror(CHAIN_B, address(mirror));
        _allowSender(relayA, address(other));
        vm.chainId(CHAIN_A);
        vm.recordLogs();
        bytes32 id = other.publish(deviceId, CHAIN_B);
        ICrossChainRelay.Message memory m = _sentMessages(vm.getRecordedLogs(), address(relayA))[0];

        vm.expectEmit(address(relayB));
        emit ICrossChainRelay.MessageFailed(
            id,
            CHAIN_A,
            address(mirror),
            abi.encodeWithSelector(RelayRecipient.UntrustedSender.selector, CHAIN_A, address(other))
        );
        (, bool success) = _deliver(relayB, m, _sigs(m));
        assertFalse(success);
        assertFalse(mirror.isAdmitted(deviceId));

        // once trusted, anyone may retry it
        vm.prank(mirrorOwner);
        mirror.setTrustedPublisher(CHAIN_A, address(other), true);
        vm.prank(stranger);
        relayB.retry(m, publisher.MIRROR_GAS_LIMIT());
        assertTrue(mirror.isAdmitted(deviceId));
    }

    function test_recipient_trustedSenderSetAndUnset() public {
        address p = makeAddr("publisher 2");
        assertFalse(mirror.isTrustedSender(CHAIN_A, p));
        vm.expectEmit(address(mirror));
        emit RelayRecipient.TrustedSenderSet(CHAIN_A, p, true);
        vm.prank(mirrorOwner);
        mirror.setTrustedPublisher(CHAIN_A, p, true);
        assertTrue(mirror.isTrustedSender(CHAIN_A, p));
        assertFalse(mirror.isTrustedSender(CHAIN_C, p));

        vm.expectEmit(address(mirror));
        emit RelayRecipient.TrustedSenderSet(CHAIN_A, p, false);
        vm.prank(mirrorOwner);
        mirror.setTrustedPublisher(CHAIN_A, p, false);
        assertFalse(mirror.isTrustedSender(CHAIN_A, p));

        // untrusting the real publisher makes its next snapshot fail at the mirror
        vm.prank(mirrorOwner);
        mirror.setTrustedPublisher(CHAIN_A, address(publisher), false);
        uint256 deviceId = _newDevice(DEVICE_PK, alice, true);
        ICrossChainRelay.Message memory m = _publish(deviceId, CHAIN_B);
        (, bool success) = _deliver(relayB, m, _sigs(m));
        assertFalse(success);
        assertFalse(mirror.isAdmitted(deviceId));
    }

    function test_recipient_setTrustedPublisherOnlyOwner() public {
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, stranger));
        vm.prank(stranger);
        mirror.setTrustedPublisher(CHAIN_A, stranger, true);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, address(relayB)));
        vm.prank(address(relayB));
        mirror.setTrustedPublisher(CHAIN_A, stranger, true);
        assertFalse(mirror.isTrustedSender(CHAIN_A, stranger));
    }

    function test_recipient_constructorReverts() public {
        vm.expectRevert(RelayRecipient.ZeroRelay.selector);
        new DeviceMirror(address(0), mirrorOwner);
        vm.expectRevert(RelayRecipient.ZeroRelay.selector);
        new RelayRecipientMock(address(0));
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableInvalidOwner.selector, address(0)));
        new DeviceMirror(address(relayB), address(0));
        DeviceMirror m = new DeviceMirror(address(relayB), mirrorOwner);
        assertEq(m.relay(), address(relayB));
        assertEq(m.owner(), mirrorOwner);
    }

    // ================================================================== DeviceMirrorPublisher

    function test_publisher_constructor() public {
        assertEq(address(publisher.registry()), address(registry));
        assertEq(address(publisher.relay()), address(relayA));
        assertEq(publisher.owner(), publisherOwner);
        assertEq(publisher.publishInterval(), INTERVAL);
        assertEq(publisher.MIRROR_GAS_LIMIT(), 150_000);
        vm.expectRevert(DeviceMirrorPublisher.ZeroAddress.selector);
        new DeviceMirrorPublisher(IDeviceRegistry(address(0)), relayA, publisherOwner, INTERVAL);
        vm.expectRevert(DeviceMirrorPublisher.ZeroAddress.selector);
        new DeviceMirrorPublisher(IDeviceRegistry(address(registry)), ICrossChainRelay(address(0)), publisherOwner, 1);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableInvalidOwner.selector, address(0)));
        new DeviceMirrorPublisher(IDeviceRegistry(address(registry)), relayA, address(0), INTERVAL);
    }

    function test_publisher_setMirror() public {
        assertEq(publisher.mirrorOf(CHAIN_B), address(mirror));
        assertEq(publisher.mirrorOf(4242), address(0));
        vm.expectEmit(address(publisher));
        emit DeviceMirrorPublisher.MirrorSet(4242, alice);
        vm.prank(publisherOwner);
        publisher.setMirror(4242, alice);
        assertEq(publisher.mirrorOf(4242), alice);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, stranger));
        vm.prank(stranger);
        publisher.setMirror(CHAIN_B, stranger);
        // zero stops publishing to that chain
        vm.prank(publisherOwner);
        publisher.setMirror(CHAIN_B, address(0));
        uint256 deviceId = _newDevice(DEVICE_PK, alice, true);
        vm.expectRevert(abi.encodeWithSelector(DeviceMirrorPublisher.NoMirror.selector, CHAIN_B));
        publisher.publish(deviceId, CHAIN_B);
    }

    function test_publisher_revertsOnNoMirrorAndUnknownDevice() public {
        uint256 deviceId = _newDevice(DEVICE_PK, alice, true);
        vm.expectRevert(abi.encodeWithSelector(DeviceMirrorPublisher.NoMirror.selector, uint64(4242)));
        publisher.publish(deviceId, 4242);
        vm.expectRevert(abi.encodeWithSelector(DeviceMirrorPublisher.UnknownDevice.selector, 12345));
        publisher.publish(12345, CHAIN_B);
        // a mirror on a chain the relay does not know: the relay refuses
        vm.prank(publisherOwner);
        publisher.setMirror(4242, alice);
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.UnknownDestination.selector, uint64(4242)));
        publisher.publish(deviceId, 4242);
        assertEq(publisher.lastPublishedAt(deviceId, 4242), 0);
    }

    function test_publisher_refusesWhenNotAllowedByTheRelay() public {
        uint256 deviceId = _newDevice(DEVICE_PK, alice, true);
        vm.prank(relayOwner);
        relayA.setSenderAllowed(address(publisher), false);
        vm.expectRevert(abi.encodeWithSelector(ICrossChainRelay.SenderNotAllowed.selector, address(publisher)));
        publisher.publish(deviceId, CHAIN_B);
    }

    function test_publisher_eventAndMessage() public {
        uint256 deviceId = _newDevice(DEVICE_PK, alice, true);
        uint64 seq = uint64(block.timestamp << 24);
        IDeviceMirror.DeviceSnapshot memory snap =
            IDeviceMirror.DeviceSnapshot(deviceId, alice, vm.addr(DEVICE_PK), IDeviceRegistry.DeviceState.Active, seq);
        ICrossChainRelay.Message memory expected = _expectedMessage(
            relayA, address(publisher), relayB, address(mirror), publisher.MIRROR_GAS_LIMIT(), abi.encode(snap)
        );
        bytes32 id = _messageId(expected);
        vm.expectEmit(address(relayA));
        emit ICrossChainRelay.MessageSent(id, CHAIN_B, address(publisher), expected);
        vm.expectEmit(address(publisher));
        emit DeviceMirrorPublisher.DevicePublished(
            deviceId, CHAIN_B, id, alice, IDeviceRegistry.DeviceState.Active, seq
        );
        vm.prank(stranger);
        assertEq(publisher.publish(deviceId, CHAIN_B), id);
    }

    function test_publisher_nothingChangedAndTooSoon() public {
        uint256 deviceId = _newDevice(DEVICE_PK, alice, true);
        uint256 t0 = block.timestamp;
        _publish(deviceId, CHAIN_B);
        uint256 availableAt = t0 + INTERVAL;
        vm.expectRevert(
            abi.encodeWithSelector(DeviceMirrorPublisher.NothingChanged.selector, deviceId, CHAIN_B, availableAt)
        );
        publisher.publish(deviceId, CHAIN_B);

        // a change within the interval: too soon
        vm.prank(alice);
        registry.transferFrom(alice, bob, deviceId);
        vm.warp(availableAt - 1);
        vm.expectRevert(
            abi.encodeWithSelector(DeviceMirrorPublisher.PublishTooSoon.selector, deviceId, CHAIN_B, availableAt)
        );
        publisher.publish(deviceId, CHAIN_B);
        // and back: the same as the last one sent, so "nothing changed"
        vm.prank(bob);
        registry.transferFrom(bob, alice, deviceId);
        vm.expectRevert(
            abi.encodeWithSelector(DeviceMirrorPublisher.NothingChanged.selector, deviceId, CHAIN_B, availableAt)
        );
        publisher.publish(deviceId, CHAIN_B);

        // other chains have their own clock
        _publish(deviceId, CHAIN_C);

        // after the interval an unchanged snapshot may go again (heals a lost message)
        vm.warp(availableAt);
        ICrossChainRelay.Message memory again = _publish(deviceId, CHAIN_B);
        assertEq(_snapshot(again).owner, alice);
    }

    function test_publisher_awayAndBackIsChangedOnlyAgainstTheLastSent() public {
        uint256 deviceId = _newDevice(DEVICE_PK, alice, true);
        _publish(deviceId, CHAIN_B); // alice
        vm.warp(block.timestamp + INTERVAL);
        vm.prank(alice);
        registry.transferFrom(alice, bob, deviceId);
        _publish(deviceId, CHAIN_B); // bob is the last sent
        uint256 availableAt = block.timestamp + INTERVAL;
        // back to alice: differs from the last sent (bob), so it is a change (too soon, for now)
        vm.prank(bob);
        registry.transferFrom(bob, alice, deviceId);
        vm.expectRevert(
            abi.encodeWithSelector(DeviceMirrorPublisher.PublishTooSoon.selector, deviceId, CHAIN_B, availableAt)
        );
        publisher.publish(deviceId, CHAIN_B);
        // away to bob again: equal to the last sent
        vm.prank(alice);
        registry.transferFrom(alice, bob, deviceId);
        vm.expectRevert(
            abi.encodeWithSelector(DeviceMirrorPublisher.NothingChanged.selector, deviceId, CHAIN_B, availableAt)
        );
        publisher.publish(deviceId, CHAIN_B);
        // back to alice and after the interval: sent
        vm.prank(bob);
        registry.transferFrom(bob, alice, deviceId);
        vm.warp(availableAt);
        assertEq(_snapshot(_publish(deviceId, CHAIN_B)).owner, alice);
    }

    function test_publisher_decommissioningGoesAtOnce() public {
        uint256 deviceId = _newDevice(DEVICE_PK, alice, true);
        _publish(deviceId, CHAIN_B);
        vm.prank(alice);
        registry.decommission(deviceId);
        ICrossChainRelay.Message memory m = _publish(deviceId, CHAIN_B);
        assertEq(uint8(_snapshot(m).state), uint8(IDeviceRegistry.DeviceState.Decommissioned));
        vm.expectRevert(
            abi.encodeWithSelector(
                DeviceMirrorPublisher.NothingChanged.selector, deviceId, CHAIN_B, block.timestamp + INTERVAL
            )
        );
        publisher.publish(deviceId, CHAIN_B);
    }

    function test_publisher_newMirrorWaitsForTheInterval() public {
        // The mirror is part of the snapshot hash, so a replaced mirror is not "nothing changed"; it is still
        // held to the interval (PublishTooSoon) like any other change.
        uint256 deviceId = _newDevice(DEVICE_PK, alice, true);
        _publish(deviceId, CHAIN_B);
        vm.chainId(CHAIN_B);
        DeviceMirror next = new DeviceMirror(address(relayB), mirrorOwner);
        vm.prank(mirrorOwner);
        next.setTrustedPublisher(CHAIN_A, address(publisher), true);
        vm.chainId(CHAIN_A);
        vm.prank(publisherOwner);
        publisher.setMirror(CHAIN_B, address(next));
        vm.expectRevert(
            abi.encodeWithSelector(
                DeviceMirrorPublisher.PublishTooSoon.selector, deviceId, CHAIN_B, block.timestamp + INTERVAL
            )
        );
        publisher.publish(deviceId, CHAIN_B);
        vm.warp(block.timestamp + INTERVAL);
        ICrossChainRelay.Message memory m = _publish(deviceId, CHAIN_B);
        assertEq(m.recipient, address(next));
        _deliverOk(relayB, m);
        assertTrue(next.isAdmitted(deviceId));
    }

    function test_publisher_sequenceIncreases() public {
        uint256 d1 = _newDevice(DEVICE_PK, alice, true);
        uint256 d2 = _newDevice(0xD2, bob, true);
        uint64 base = uint64(block.timestamp << 24);
        assertEq(_snapshot(_publish(d1, CHAIN_B)).sequence, base);
        // same second: +1, across devices and chains
        assertEq(_snapshot(_publish(d2, CHAIN_B)).sequence, base + 1);
        assertEq(_snapshot(_publish(d1, CHAIN_C)).sequence, base + 2);
        // a later second: from the clock
        vm.warp(block.timestamp + INTERVAL);
        uint64 later = uint64(block.timestamp << 24);
        assertGt(later, base + 2);
        assertEq(_snapshot(_publish(d1, CHAIN_B)).sequence, later);
        assertEq(_snapshot(_publish(d2, CHAIN_B)).sequence, later + 1);
    }

    function test_publisher_replacementContinuesAbove() public {
        uint256 deviceId = _newDevice(DEVICE_PK, alice, true);
        ICrossChainRelay.Message memory m1 = _publish(deviceId, CHAIN_B);
        _deliverOk(relayB, m1);
        // a replacement publisher a second later: its sequences start above the old one's
        vm.warp(block.timestamp + 1);
        vm.chainId(CHAIN_A);
        DeviceMirrorPublisher next =
            new DeviceMirrorPublisher(IDeviceRegistry(address(registry)), relayA, publisherOwner, INTERVAL);
        vm.prank(publisherOwner);
        next.setMirror(CHAIN_B, address(mirror));
        _allowSender(relayA, address(next));
        vm.prank(mirrorOwner);
        mirror.setTrustedPublisher(CHAIN_A, address(next), true);
        vm.prank(alice);
        registry.suspend(deviceId);
        vm.chainId(CHAIN_A);
        vm.recordLogs();
        next.publish(deviceId, CHAIN_B);
        ICrossChainRelay.Message memory m2 = _sentMessages(vm.getRecordedLogs(), address(relayA))[0];
        assertGt(_snapshot(m2).sequence, _snapshot(m1).sequence);
        _deliverOk(relayB, m2);
        assertFalse(mirror.isAdmitted(deviceId));
    }

    /// @dev A snapshot whose sequence equals the held one is ignored like an older one.
    function test_mirror_equalSequenceIsIgnored() public {
        address key = vm.addr(DEVICE_PK);
        bytes memory first =
            abi.encode(IDeviceMirror.DeviceSnapshot(9, alice, key, IDeviceRegistry.DeviceState.Active, 5));
        bytes memory same =
            abi.encode(IDeviceMirror.DeviceSnapshot(9, bob, key, IDeviceRegistry.DeviceState.Suspended, 5));
        vm.startPrank(address(relayB));
        mirror.receiveMessage(bytes32(uint256(1)), CHAIN_A, address(publisher), first);
        vm.expectEmit(address(mirror));
        emit IDeviceMirror.StaleSnapshotIgnored(9, 5, 5);
        mirror.receiveMessage(bytes32(uint256(2)), CHAIN_A, address(publisher), same);
        vm.stopPrank();
        _assertMirrored(9, alice, key, IDeviceRegistry.DeviceState.Active);
    }

    // ================================================================== end to end

    function test_endToEnd_lifecycleMirroredToChainB() public {
        address key = vm.addr(DEVICE_PK);
        uint256 deviceId = _newDevice(DEVICE_PK, alice, true);
        assertFalse(mirror.isAdmitted(deviceId));
        assertEq(mirror.admittedDeviceOfKey(key), 0);
        IDeviceMirror.DeviceSnapshot memory none = mirror.snapshotOf(deviceId);
        assertEq(none.deviceId, 0);
        assertEq(none.sequence, 0);

        // provisioned and activated on A, published, delivered on B: admitted
        ICrossChainRelay.Message memory m = _publish(deviceId, CHAIN_B);
        IDeviceMirror.DeviceSnapshot memory s = _snapshot(m);
        vm.expectEmit(address(mirror));
        emit IDeviceMirror.DeviceMirrored(
            deviceId, alice, key, IDeviceRegistry.DeviceState.Active, s.sequence, _messageId(m)
        );
        _deliverOk(relayB, m);
        _assertMirrored(deviceId, alice, key, IDeviceRegistry.DeviceState.Active);
        assertEq(mirror.snapshotOf(deviceId).sequence, s.sequence);

        // sold on A: the new owner on B
        vm.warp(block.timestamp + INTERVAL);
        vm.prank(alice);
        registry.transferFrom(alice, bob, deviceId);
        _publishAndDeliver(deviceId);
        _assertMirrored(deviceId, bob, key, IDeviceRegistry.DeviceState.Active);

        // key rotated on A: the old key is no longer admitted, the new one is
        vm.warp(block.timestamp + INTERVAL);
        vm.chainId(CHAIN_A);
        address rotated = vm.addr(ROTATED_PK);
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory sig = _signRotateKey(registry, ROTATED_PK, deviceId, deadline);
        vm.prank(bob);
        registry.rotateKey(deviceId, rotated, deadline, sig);
        _publishAndDeliver(deviceId);
        _assertMirrored(deviceId, bob, rotated, IDeviceRegistry.DeviceState.Active);
        assertEq(mirror.admittedDeviceOfKey(key), 0, "old key still admitted");

        // suspended: not admitted; resumed: admitted again
        vm.warp(block.timestamp + INTERVAL);
        vm.prank(bob);
        registry.suspend(deviceId);
        _publishAndDeliver(deviceId);
        _assertMirrored(deviceId, bob, rotated, IDeviceRegistry.DeviceState.Suspended);
        vm.warp(block.timestamp + INTERVAL);
        vm.prank(bob);
        registry.resume(deviceId);
        _publishAndDeliver(deviceId);
        _assertMirrored(deviceId, bob, rotated, IDeviceRegistry.DeviceState.Active);

        // decommissioned (at once, no interval): not admitted
        vm.prank(bob);
        registry.decommission(deviceId);
        _publishAndDeliver(deviceId);
        _assertMirrored(deviceId, bob, rotated, IDeviceRegistry.DeviceState.Decommissioned);
        assertEq(mirror.admittedDeviceOfKey(rotated), 0);
    }

    function test_endToEnd_provisionedButNotActiveIsNotAdmitted() public {
        uint256 deviceId = _newDevice(DEVICE_PK, alice, false);
        _publishAndDeliver(deviceId);
        _assertMirrored(deviceId, alice, vm.addr(DEVICE_PK), IDeviceRegistry.DeviceState.Provisioned);
        vm.warp(block.timestamp + INTERVAL);
        vm.prank(alice);
        registry.activate(deviceId);
        _publishAndDeliver(deviceId);
        _assertMirrored(deviceId, alice, vm.addr(DEVICE_PK), IDeviceRegistry.DeviceState.Active);
    }

    function test_endToEnd_twoDevicesTwoChains() public {
        uint256 d1 = _newDevice(DEVICE_PK, alice, true);
        uint256 d2 = _newDevice(0xD2, bob, true);
        _publishAndDeliver(d1);
        ICrossChainRelay.Message memory toC = _publish(d2, CHAIN_C);
        _deliverOk(relayC, toC);
        assertTrue(mirror.isAdmitted(d1));
        assertFalse(mirror.isAdmitted(d2), "a device published to C only is not admitted on B");
        assertTrue(mirrorC.isAdmitted(d2));
        assertFalse(mirrorC.isAdmitted(d1));
        assertEq(mirror.admittedDeviceOfKey(vm.addr(0xD2)), 0);
        assertEq(mirrorC.admittedDeviceOfKey(vm.addr(0xD2)), d2);
    }

    function test_endToEnd_staleSnapshotIsIgnored() public {
        uint256 deviceId = _newDevice(DEVICE_PK, alice, true);
        ICrossChainRelay.Message memory older = _publish(deviceId, CHAIN_B); // alice, Active
        vm.warp(block.timestamp + INTERVAL);
        vm.prank(alice);
        registry.transferFrom(alice, bob, deviceId);
        ICrossChainRelay.Message memory newer = _publish(deviceId, CHAIN_B); // bob, Active
        uint64 seqOld = _snapshot(older).sequence;
        uint64 seqNew = _snapshot(newer).sequence;
        assertGt(seqNew, seqOld);

        // delivered out of order
        _deliverOk(relayB, newer);
        _assertMirrored(deviceId, bob, vm.addr(DEVICE_PK), IDeviceRegistry.DeviceState.Active);
        vm.recordLogs();
        vm.expectEmit(address(mirror));
        emit IDeviceMirror.StaleSnapshotIgnored(deviceId, seqOld, seqNew);
        _deliverOk(relayB, older); // the relay's call succeeds; the mirror ignores it
        Vm.Log[] memory logs = vm.getRecordedLogs();
        for (uint256 i; i < logs.length; ++i) {
            assertTrue(logs[i].topics[0] != IDeviceMirror.DeviceMirrored.selector, "a stale snapshot was applied");
        }
        _assertMirrored(deviceId, bob, vm.addr(DEVICE_PK), IDeviceRegistry.DeviceState.Active);
        assertEq(mirror.snapshotOf(deviceId).sequence, seqNew);
    }

    function test_endToEnd_staleActiveAfterDecommissionIsIgnored() public {
        uint256 deviceId = _newDevice(DEVICE_PK, alice, true);
        ICrossChainRelay.Message memory active = _publish(deviceId, CHAIN_B);
        vm.prank(alice);
        registry.decommission(deviceId);
        ICrossChainRelay.Message memory gone = _publish(deviceId, CHAIN_B); // at once, same second
        assertEq(_snapshot(gone).sequence, _snapshot(active).sequence + 1);
        _deliverOk(relayB, gone);
        vm.expectEmit(address(mirror));
        emit IDeviceMirror.StaleSnapshotIgnored(deviceId, _snapshot(active).sequence, _snapshot(gone).sequence);
        _deliverOk(relayB, active);
        _assertMirrored(deviceId, alice, vm.addr(DEVICE_PK), IDeviceRegistry.DeviceState.Decommissioned);
    }
}
