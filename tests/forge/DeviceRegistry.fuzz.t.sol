// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC721Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {IDeviceRegistry} from "../../interfaces/IDeviceRegistry.sol";
import {ThingledgerTest} from "./utils/ThingledgerTest.sol";

/// @notice Fuzz tests of DeviceRegistry: provisioning signatures, device-signed actions, key rotation,
/// permission grants, and owner-only management (ERC-721 approvals move tokens, nothing else).
contract DeviceRegistryFuzzTest is ThingledgerTest {
    address internal owner = makeAddr("owner");
    address internal grantee = makeAddr("grantee");
    address internal buyer = makeAddr("buyer");

    // ================================================================== provisioning

    function test_DomainSeparatorMatchesIndependentComputation() public view {
        assertEq(registry.domainSeparator(), _domainSeparator(address(registry), block.chainid));
    }

    function testFuzz_Provision_ValidSignatureSucceeds(
        uint256 pkSeed,
        IDeviceRegistry.ManufacturingRecord memory record,
        uint256 deadline
    ) public {
        uint256 pk = _pk(pkSeed);
        address key = vm.addr(pk);
        record.warrantyEnd = uint64(bound(record.warrantyEnd, 0, type(uint32).max));
        deadline = bound(deadline, block.timestamp, type(uint256).max);
        bytes memory sig = _signProvision(registry, pk, manufacturer, record, deadline);

        vm.expectEmit(true, true, true, true, address(registry));
        emit IDeviceRegistry.DeviceProvisioned(uint256(uint160(key)), manufacturer, key, _recordHash(record), record);
        vm.prank(manufacturer);
        uint256 deviceId = registry.provision(key, record, deadline, sig);

        assertEq(deviceId, uint256(uint160(key)), "id is the first key");
        assertEq(registry.ownerOf(deviceId), manufacturer, "minted to the manufacturer");
        IDeviceRegistry.Device memory device = registry.getDevice(deviceId);
        assertEq(device.key, key);
        assertEq(uint8(device.state), uint8(IDeviceRegistry.DeviceState.Provisioned));
        assertEq(device.warrantyEnd, record.warrantyEnd);
        assertEq(device.nonce, 1, "provisioning consumes nonce 0");
        assertEq(device.epoch, 0);
        assertTrue(registry.isKeyUsed(key));
        assertEq(registry.deviceIdOfKey(key), deviceId);
        assertEq(registry.hashRecord(record), _recordHash(record));

        // The same signature (or any other) can never provision the key again.
        vm.prank(manufacturer);
        vm.expectRevert(abi.encodeWithSelector(IDeviceRegistry.KeyAlreadyUsed.selector, key));
        registry.provision(key, record, deadline, sig);
    }

    function testFuzz_Provision_OtherSignerFails(
        uint256 pkSeed,
        uint256 otherSeed,
        IDeviceRegistry.ManufacturingRecord memory record,
        uint256 deadline
    ) public {
        uint256 pk = _pk(pkSeed);
        uint256 otherPk = _pk(otherSeed);
        vm.assume(vm.addr(pk) != vm.addr(otherPk));
        address key = vm.addr(pk);
        record.warrantyEnd = uint64(bound(record.warrantyEnd, 0, type(uint32).max));
        deadline = bound(deadline, block.timestamp, type(uint256).max);

        // The other key signs a message that names `key`.
        bytes32 structHash = _provisionStructHash(key, manufacturer, record, 0, deadline);
        bytes memory sig = _sign(otherPk, _typedDigest(registry.domainSeparator(), structHash));

        vm.prank(manufacturer);
        vm.expectRevert(abi.encodeWithSelector(IDeviceRegistry.InvalidProvisioningSignature.selector, key));
        registry.provision(key, record, deadline, sig);
        assertFalse(registry.isKeyUsed(key));
    }

    struct ProvisionSubmission {
        address key;
        address caller;
        IDeviceRegistry.ManufacturingRecord record;
        uint256 deadline;
        bytes sig;
    }

    /// @dev Every field of the signed message and of the domain, and the signature's form, matters: change
    /// any one of them and provisioning fails; the untouched submission then succeeds.
    function testFuzz_Provision_AnyChangedFieldFails(
        uint256 pkSeed,
        IDeviceRegistry.ManufacturingRecord memory record,
        uint256 deadline,
        uint256 field,
        uint256 delta
    ) public {
        uint256 pk = _pk(pkSeed);
        address key = vm.addr(pk);
        record.warrantyEnd = uint64(bound(record.warrantyEnd, 0, type(uint32).max));
        deadline = bound(deadline, block.timestamp, type(uint128).max);

        bytes memory sig = _signProvision(registry, pk, manufacturer, record, deadline);
        ProvisionSubmission memory sub = ProvisionSubmission(key, manufacturer, _copy(record), deadline, sig);
        _changeProvisionField(sub, pk, record, bound(field, 0, 12), delta | 1);

        vm.prank(sub.caller);
        vm.expectRevert(abi.encodeWithSelector(IDeviceRegistry.InvalidProvisioningSignature.selector, sub.key));
        registry.provision(sub.key, sub.record, sub.deadline, sub.sig);

        vm.prank(manufacturer);
        assertEq(registry.provision(key, record, deadline, sig), uint256(uint160(key)));
    }

    function _changeProvisionField(
        ProvisionSubmission memory sub,
        uint256 pk,
        IDeviceRegistry.ManufacturingRecord memory record,
        uint256 field,
        uint256 delta
    ) internal view {
        if (field == 0) {
            sub.key = address(uint160(sub.key) ^ uint160(delta));
            vm.assume(sub.key != address(0));
        } else if (field == 1) {
            sub.caller = manufacturer2;
        } else if (field == 2) {
            sub.record.model = _mutate(record.model, delta);
        } else if (field == 3) {
            sub.record.serial = _mutate(record.serial, delta);
        } else if (field == 4) {
            sub.record.firmwareHash = record.firmwareHash ^ bytes32(delta);
        } else if (field == 5) {
            sub.record.manufacturedAt = record.manufacturedAt ^ uint64(delta);
        } else if (field == 6) {
            sub.record.warrantyEnd = record.warrantyEnd ^ uint64(uint32(delta)); // stays within uint32
        } else if (field == 7) {
            sub.record.metadataURI = _mutate(record.metadataURI, delta);
        } else if (field == 8) {
            sub.deadline = sub.deadline + 1 + (delta % type(uint64).max);
        } else if (field == 9) {
            // signed with a nonce other than the never-used key's 0
            sub.sig = _signProvisionWith(pk, address(registry), block.chainid, manufacturer, record, delta, sub.deadline);
        } else if (field == 10) {
            // signed for another chain
            uint256 chainId = block.chainid + 1 + (delta % type(uint64).max);
            sub.sig = _signProvisionWith(pk, address(registry), chainId, manufacturer, record, 0, sub.deadline);
        } else if (field == 11) {
            // signed for another registry
            address other = address(uint160(address(registry)) ^ uint160(delta));
            sub.sig = _signProvisionWith(pk, other, block.chainid, manufacturer, record, 0, sub.deadline);
        } else {
            // the high-s twin of the valid signature
            sub.sig = _malleate(sub.sig);
        }
    }

    function testFuzz_Provision_ExpiredDeadlineFails(uint256 pkSeed, uint256 deadline, uint256 late) public {
        uint256 pk = _pk(pkSeed);
        deadline = bound(deadline, 0, block.timestamp + 365 days);
        late = bound(late, deadline + 1, deadline + 365 days);
        IDeviceRegistry.ManufacturingRecord memory record = _defaultRecord();
        bytes memory sig = _signProvision(registry, pk, manufacturer, record, deadline);
        vm.warp(late);
        vm.prank(manufacturer);
        vm.expectRevert(abi.encodeWithSelector(IDeviceRegistry.SignatureExpired.selector, deadline));
        registry.provision(vm.addr(pk), record, deadline, sig);
    }

    function testFuzz_Provision_WarrantyBeyondUint32Fails(uint256 pkSeed, uint64 warrantyEnd) public {
        uint256 pk = _pk(pkSeed);
        warrantyEnd = uint64(bound(warrantyEnd, uint256(type(uint32).max) + 1, type(uint64).max));
        IDeviceRegistry.ManufacturingRecord memory record = _defaultRecord();
        record.warrantyEnd = warrantyEnd;
        uint256 deadline = block.timestamp;
        bytes memory sig = _signProvision(registry, pk, manufacturer, record, deadline);
        vm.prank(manufacturer);
        vm.expectRevert(abi.encodeWithSelector(IDeviceRegistry.TimestampOutOfRange.selector, warrantyEnd));
        registry.provision(vm.addr(pk), record, deadline, sig);
    }

    function testFuzz_Provision_OnlyManufacturers(uint256 pkSeed, address caller) public {
        vm.assume(caller != manufacturer && caller != manufacturer2);
        uint256 pk = _pk(pkSeed);
        IDeviceRegistry.ManufacturingRecord memory record = _defaultRecord();
        bytes memory sig = _signProvision(registry, pk, caller, record, block.timestamp);
        vm.prank(caller);
        vm.expectRevert(); // AccessControlUnauthorizedAccount
        registry.provision(vm.addr(pk), record, block.timestamp, sig);
    }

    // ================================================================== device actions

    function testFuzz_DeviceAction_ValidSignaturesConsumeNoncesInOrder(
        uint256 pkSeed,
        address target,
        bytes32 action,
        uint256 deadline,
        uint256 count
    ) public {
        _assumeCaller(target);
        uint256 pk = _pk(pkSeed);
        uint256 deviceId = _device(pk, owner);
        deadline = bound(deadline, block.timestamp, type(uint256).max);
        count = bound(count, 1, 5);

        bytes memory sig;
        for (uint256 i; i < count; ++i) {
            bytes32 a = keccak256(abi.encode(action, i));
            sig = _signDeviceAction(registry, pk, deviceId, target, a, deadline);
            vm.expectEmit(true, true, true, true, address(registry));
            emit IDeviceRegistry.DeviceActionExecuted(deviceId, target, a, i + 1);
            vm.prank(target);
            registry.useDeviceAction(deviceId, a, deadline, sig);
            assertEq(registry.getDevice(deviceId).nonce, i + 2);
        }
        assertEq(registry.getDevice(deviceId).nonce, count + 1);

        // Replaying the last signature fails: its nonce is consumed.
        bytes32 last = keccak256(abi.encode(action, count - 1));
        vm.prank(target);
        vm.expectRevert(abi.encodeWithSelector(IDeviceRegistry.InvalidDeviceSignature.selector, deviceId));
        registry.useDeviceAction(deviceId, last, deadline, sig);
    }

    struct ActionSubmission {
        uint256 deviceId;
        address caller;
        bytes32 action;
        uint256 deadline;
        bytes sig;
    }

    /// @dev Change the signer, the submitting target, the action, the nonce, the deadline, the device id, the
    /// domain or the signature's form: the action fails and the nonce is untouched.
    function testFuzz_DeviceAction_AnyChangedFieldFails(
        uint256 pkSeed,
        uint256 otherSeed,
        address target,
        bytes32 action,
        uint256 deadline,
        uint256 field,
        uint256 delta
    ) public {
        _assumeCaller(target);
        uint256 pk = _pk(pkSeed);
        uint256 otherPk = _pk(otherSeed);
        vm.assume(vm.addr(pk) != vm.addr(otherPk));
        uint256 deviceId = _device(pk, owner);
        deadline = bound(deadline, block.timestamp, type(uint128).max);

        bytes memory sig = _signDeviceAction(registry, pk, deviceId, target, action, deadline);
        ActionSubmission memory sub = ActionSubmission(deviceId, target, action, deadline, sig);
        _changeActionField(sub, pk, otherPk, bound(field, 0, 8), delta | 1);

        vm.prank(sub.caller);
        vm.expectRevert(abi.encodeWithSelector(IDeviceRegistry.InvalidDeviceSignature.selector, sub.deviceId));
        registry.useDeviceAction(sub.deviceId, sub.action, sub.deadline, sub.sig);
        assertEq(registry.getDevice(deviceId).nonce, 1, "nonce untouched");

        vm.prank(target);
        registry.useDeviceAction(deviceId, action, deadline, sig);
        assertEq(registry.getDevice(deviceId).nonce, 2);
    }

    function _changeActionField(ActionSubmission memory sub, uint256 pk, uint256 otherPk, uint256 field, uint256 delta)
        internal
    {
        uint256 deviceId = sub.deviceId;
        if (field == 0) {
            sub.sig = _signDeviceAction(registry, otherPk, deviceId, sub.caller, sub.action, sub.deadline);
        } else if (field == 1) {
            sub.caller = address(uint160(sub.caller) ^ uint160(delta));
            _assumeCaller(sub.caller);
        } else if (field == 2) {
            sub.action = sub.action ^ bytes32(delta);
        } else if (field == 3) {
            uint256 wrongNonce = (delta == 1 ? 0 : delta); // anything but the current nonce 1
            sub.sig = _signDeviceActionWith(
                pk, address(registry), block.chainid, deviceId, sub.caller, sub.action, wrongNonce, sub.deadline
            );
        } else if (field == 4) {
            sub.deadline = sub.deadline + 1 + (delta % type(uint64).max);
        } else if (field == 5) {
            // a second active device, submitted with the first device's signature
            sub.deviceId = _device(otherPk, owner);
        } else if (field == 6) {
            uint256 chainId = block.chainid + 1 + (delta % 1e9);
            sub.sig =
                _signDeviceActionWith(pk, address(registry), chainId, deviceId, sub.caller, sub.action, 1, sub.deadline);
        } else if (field == 7) {
            address other = address(uint160(address(registry)) ^ uint160(delta));
            sub.sig = _signDeviceActionWith(pk, other, block.chainid, deviceId, sub.caller, sub.action, 1, sub.deadline);
        } else {
            sub.sig = _malleate(sub.sig);
        }
    }

    function testFuzz_DeviceAction_ExpiredFails(uint256 pkSeed, bytes32 action, uint256 deadline, uint256 late)
        public
    {
        uint256 pk = _pk(pkSeed);
        uint256 deviceId = _device(pk, owner);
        deadline = bound(deadline, block.timestamp, block.timestamp + 365 days);
        late = bound(late, deadline + 1, deadline + 365 days);
        bytes memory sig = _signDeviceAction(registry, pk, deviceId, address(this), action, deadline);
        vm.warp(late);
        vm.expectRevert(abi.encodeWithSelector(IDeviceRegistry.SignatureExpired.selector, deadline));
        registry.useDeviceAction(deviceId, action, deadline, sig);
    }

    /// @dev Only an Active device acts: Provisioned, Suspended and Decommissioned devices are refused even
    /// with a perfect signature.
    function testFuzz_DeviceAction_RequiresActive(uint256 pkSeed, bytes32 action, uint256 stateSel) public {
        uint256 pk = _pk(pkSeed);
        uint256 deviceId = _provisionDevice(registry, manufacturer, pk, owner, false);
        stateSel = bound(stateSel, 0, 2);
        IDeviceRegistry.DeviceState expectedState = IDeviceRegistry.DeviceState.Provisioned;
        vm.startPrank(owner);
        if (stateSel == 1) {
            registry.activate(deviceId);
            registry.suspend(deviceId);
            expectedState = IDeviceRegistry.DeviceState.Suspended;
        } else if (stateSel == 2) {
            registry.activate(deviceId);
            registry.decommission(deviceId);
            expectedState = IDeviceRegistry.DeviceState.Decommissioned;
        }
        vm.stopPrank();

        bytes memory sig = _signDeviceAction(registry, pk, deviceId, address(this), action, block.timestamp);
        vm.expectRevert(abi.encodeWithSelector(IDeviceRegistry.DeviceNotActive.selector, deviceId, expectedState));
        registry.useDeviceAction(deviceId, action, block.timestamp, sig);

        if (stateSel != 2) {
            vm.prank(owner);
            if (stateSel == 0) registry.activate(deviceId);
            else registry.resume(deviceId);
            registry.useDeviceAction(deviceId, action, block.timestamp, sig);
            assertEq(registry.getDevice(deviceId).nonce, 2);
        }
    }

    /// @dev After a rotation only the new key acts; signatures the old key made (even for the current nonce)
    /// are void; both keys stay burnt.
    function testFuzz_RotateKey_OnlyNewKeyActs(uint256 pkSeed, uint256 newSeed, bytes32 action) public {
        uint256 pk = _pk(pkSeed);
        uint256 newPk = _pk(newSeed);
        vm.assume(vm.addr(pk) != vm.addr(newPk));
        uint256 deviceId = _device(pk, owner);
        address oldKey = vm.addr(pk);
        address newKey = vm.addr(newPk);

        bytes memory oldSig = _signDeviceAction(registry, pk, deviceId, address(this), action, block.timestamp);
        bytes memory rotateSig = _signRotateKey(registry, newPk, deviceId, block.timestamp);

        // Nobody but the owner rotates, and only with the new key's signature.
        vm.prank(grantee);
        vm.expectRevert(abi.encodeWithSelector(IDeviceRegistry.NotDeviceOwner.selector, deviceId, grantee));
        registry.rotateKey(deviceId, newKey, block.timestamp, rotateSig);
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(IDeviceRegistry.InvalidDeviceSignature.selector, deviceId));
        registry.rotateKey(deviceId, newKey, block.timestamp, oldSig);

        vm.prank(owner);
        registry.rotateKey(deviceId, newKey, block.timestamp, rotateSig);
        IDeviceRegistry.Device memory device = registry.getDevice(deviceId);
        assertEq(device.key, newKey);
        assertEq(device.nonce, 2, "rotation consumes a nonce");

        vm.expectRevert(abi.encodeWithSelector(IDeviceRegistry.InvalidDeviceSignature.selector, deviceId));
        registry.useDeviceAction(deviceId, action, block.timestamp, oldSig);
        bytes memory oldSigNow = _signDeviceAction(registry, pk, deviceId, address(this), action, block.timestamp);
        vm.expectRevert(abi.encodeWithSelector(IDeviceRegistry.InvalidDeviceSignature.selector, deviceId));
        registry.useDeviceAction(deviceId, action, block.timestamp, oldSigNow);

        bytes memory newSig = _signDeviceAction(registry, newPk, deviceId, address(this), action, block.timestamp);
        vm.expectEmit(true, true, true, true, address(registry));
        emit IDeviceRegistry.DeviceActionExecuted(deviceId, address(this), action, 2);
        registry.useDeviceAction(deviceId, action, block.timestamp, newSig);
        assertEq(registry.getDevice(deviceId).nonce, 3);

        assertEq(registry.deviceIdOfKey(newKey), deviceId);
        assertEq(registry.deviceIdOfKey(oldKey), 0);
        assertTrue(registry.isKeyUsed(oldKey));
        assertTrue(registry.isKeyUsed(newKey));

        // The rotated-in key can never be provisioned, nor rotated in again.
        IDeviceRegistry.ManufacturingRecord memory record = _defaultRecord();
        bytes memory provSig = _signProvision(registry, newPk, manufacturer, record, block.timestamp);
        vm.prank(manufacturer);
        vm.expectRevert(abi.encodeWithSelector(IDeviceRegistry.KeyAlreadyUsed.selector, newKey));
        registry.provision(newKey, record, block.timestamp, provSig);
        bytes memory backSig = _signRotateKey(registry, pk, deviceId, block.timestamp);
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(IDeviceRegistry.KeyAlreadyUsed.selector, oldKey));
        registry.rotateKey(deviceId, oldKey, block.timestamp, backSig);
    }

    // ================================================================== grants

    struct GrantModel {
        uint256 deviceId;
        uint64 mask;
        uint64 expiresAt;
        bool active;
        bool grantAlive; // of the current epoch and not revoked
        address currentOwner;
    }

    /// @dev hasPermission(grantee) == bits all held && unexpired && grant of the current epoch && Active,
    /// after any of: nothing, suspension, suspension+resumption, transfer, transfer and back, decommission,
    /// revocation, re-grant by the new owner; at any later time.
    function testFuzz_HasPermission_MatchesModel(
        uint64 mask,
        uint64 query,
        bool subset,
        uint256 lifetime,
        uint256 elapsed,
        uint256 scenario,
        uint64 newMask
    ) public {
        GrantModel memory m;
        m.deviceId = _device(0xA11CE, owner);
        m.mask = uint64(bound(mask, 1, type(uint64).max));
        m.expiresAt = uint64(block.timestamp + bound(lifetime, 1, 365 days));
        m.active = true;
        m.grantAlive = true;
        m.currentOwner = owner;

        vm.expectEmit(true, true, false, true, address(registry));
        // one epoch already: the manufacturer handed the device to `owner`
        emit IDeviceRegistry.PermissionsGranted(m.deviceId, grantee, m.mask, m.expiresAt, 1);
        vm.prank(owner);
        registry.grantPermissions(m.deviceId, grantee, m.mask, m.expiresAt);

        _applyScenario(m, bound(scenario, 0, 7), newMask);
        if (subset) query &= m.mask;

        vm.warp(block.timestamp + bound(elapsed, 0, 400 days));
        bool unexpired = block.timestamp <= m.expiresAt;
        bool expected = query != 0 && m.active && m.grantAlive && unexpired && (m.mask & query) == query;
        assertEq(registry.hasPermission(m.deviceId, grantee, query), expected, "grantee");
        assertEq(registry.hasPermission(m.deviceId, m.currentOwner, query), query != 0 && m.active, "owner");
        if (m.currentOwner != owner) {
            assertFalse(registry.hasPermission(m.deviceId, owner, query), "former owner");
        }
        assertFalse(registry.hasPermission(m.deviceId, makeAddr("stranger"), query), "stranger");

        (,, bool live) = registry.grantOf(m.deviceId, grantee);
        assertEq(live, m.active && m.grantAlive && unexpired, "grantOf.live");
    }

    function _applyScenario(GrantModel memory m, uint256 scenario, uint64 newMask) internal {
        uint256 deviceId = m.deviceId;
        if (scenario == 1) {
            vm.prank(owner);
            registry.suspend(deviceId);
            m.active = false;
        } else if (scenario == 2) {
            vm.startPrank(owner);
            registry.suspend(deviceId);
            registry.resume(deviceId);
            vm.stopPrank();
        } else if (scenario == 3) {
            vm.prank(owner);
            registry.transferFrom(owner, buyer, deviceId);
            m.grantAlive = false;
            m.currentOwner = buyer;
        } else if (scenario == 4) {
            vm.prank(owner);
            registry.transferFrom(owner, buyer, deviceId);
            vm.prank(buyer);
            registry.transferFrom(buyer, owner, deviceId);
            m.grantAlive = false; // back with the same owner, but in a new epoch
        } else if (scenario == 5) {
            vm.prank(owner);
            registry.decommission(deviceId);
            m.active = false;
        } else if (scenario == 6) {
            vm.prank(owner);
            registry.revokePermissions(deviceId, grantee);
            m.grantAlive = false;
        } else if (scenario == 7) {
            // the new owner grants again, in the new epoch, with new bits
            vm.prank(owner);
            registry.transferFrom(owner, buyer, deviceId);
            m.currentOwner = buyer;
            m.mask = uint64(bound(newMask, 1, type(uint64).max));
            vm.prank(buyer);
            registry.grantPermissions(deviceId, grantee, m.mask, m.expiresAt);
        }
    }

    function testFuzz_Grant_Rejections(address caller, address to, uint64 mask, uint64 expiresAt, uint256 which)
        public
    {
        uint256 deviceId = _device(0xB0B, owner);
        which = bound(which, 0, 4);
        mask = uint64(bound(mask, 1, type(uint64).max));
        expiresAt = uint64(bound(expiresAt, block.timestamp + 1, type(uint64).max));
        if (to == address(0)) to = grantee;
        address from = owner;
        bytes memory err;
        if (which == 0) {
            vm.assume(caller != owner);
            from = caller;
            err = abi.encodeWithSelector(IDeviceRegistry.NotDeviceOwner.selector, deviceId, caller);
        } else if (which == 1) {
            to = address(0);
            err = abi.encodeWithSelector(IDeviceRegistry.ZeroAddress.selector);
        } else if (which == 2) {
            mask = 0;
            err = abi.encodeWithSelector(IDeviceRegistry.EmptyPermissions.selector);
        } else if (which == 3) {
            expiresAt = uint64(bound(expiresAt, 0, block.timestamp));
            err = abi.encodeWithSelector(IDeviceRegistry.GrantAlreadyExpired.selector, expiresAt);
        } else {
            vm.prank(owner);
            registry.decommission(deviceId);
            err = abi.encodeWithSelector(IDeviceRegistry.DeviceIsDecommissioned.selector, deviceId);
        }
        vm.prank(from);
        vm.expectRevert(err);
        registry.grantPermissions(deviceId, to, mask, expiresAt);
        (uint64 stored,,) = registry.grantOf(deviceId, to);
        assertEq(stored, 0);
    }

    /// @dev An approved address or an operator (setApprovalForAll), whoever it is, cannot grant, revoke,
    /// rotate the key or run the lifecycle (NotDeviceOwner, nothing changes), but moves the token; after the
    /// transfer the former operator still cannot, and the new owner can.
    function testFuzz_OwnerOnly_ApprovalMovesTheTokenButManagesNothing(
        uint64 mask,
        address operator,
        bool forAll,
        uint256 which,
        uint256 newKeySeed
    ) public {
        _assumeCaller(operator);
        vm.assume(operator != buyer && operator != grantee && operator != address(this));
        which = bound(which, 0, 6);
        // Provisioned for activate, Active otherwise (Suspended for resume, below)
        uint256 deviceId = _provisionDevice(registry, manufacturer, 0xC0FFEE, owner, which != 0);
        mask = uint64(bound(mask, 1, type(uint64).max));
        uint256 newPk = _pk(newKeySeed);
        vm.assume(!registry.isKeyUsed(vm.addr(newPk)));
        vm.startPrank(owner);
        registry.grantPermissions(deviceId, grantee, mask, uint64(block.timestamp + 1 days));
        if (which == 1) registry.suspend(deviceId);
        if (forAll) registry.setApprovalForAll(operator, true);
        else registry.approve(operator, deviceId);
        vm.stopPrank();
        // One calldata serves every attempt: nothing below changes the nonce a rotation is signed over.
        bytes memory call_ = _managementCall(deviceId, which, mask, newPk);
        IDeviceRegistry.Device memory before = registry.getDevice(deviceId);

        _expectNotOwner(operator, deviceId, call_);
        IDeviceRegistry.Device memory after_ = registry.getDevice(deviceId);
        assertEq(after_.key, before.key);
        assertEq(uint8(after_.state), uint8(before.state));
        assertEq(after_.nonce, before.nonce);
        (uint64 granted,,) = registry.grantOf(deviceId, grantee);
        assertEq(granted, mask, "the owner's grant untouched");
        (uint64 own,,) = registry.grantOf(deviceId, operator);
        assertEq(own, 0, "the operator granted itself nothing");

        // The approval still moves the token.
        vm.prank(operator);
        registry.transferFrom(owner, buyer, deviceId);
        assertEq(registry.ownerOf(deviceId), buyer);
        if (forAll) {
            // still the owner's operator, but the token is no longer the owner's
            vm.prank(operator);
            vm.expectRevert(
                abi.encodeWithSelector(IERC721Errors.ERC721InsufficientApproval.selector, operator, deviceId)
            );
            registry.transferFrom(buyer, operator, deviceId);
        }
        _expectNotOwner(operator, deviceId, call_);
        vm.prank(buyer);
        (bool ok,) = address(registry).call(call_);
        assertTrue(ok, "the new owner manages its device");
    }

    function _expectNotOwner(address caller, uint256 deviceId, bytes memory call_) internal {
        vm.prank(caller);
        (bool ok, bytes memory reason) = address(registry).call(call_);
        assertFalse(ok, "a non-owner managed the device");
        assertEq(reason, abi.encodeWithSelector(IDeviceRegistry.NotDeviceOwner.selector, deviceId, caller));
    }

    /// @dev 0 activate, 1 resume, 2 suspend, 3 decommission, 4 grantPermissions, 5 revokePermissions, 6 rotateKey.
    function _managementCall(uint256 deviceId, uint256 which, uint64 mask, uint256 newPk)
        internal
        view
        returns (bytes memory)
    {
        if (which == 0) return abi.encodeCall(IDeviceRegistry.activate, (deviceId));
        if (which == 1) return abi.encodeCall(IDeviceRegistry.resume, (deviceId));
        if (which == 2) return abi.encodeCall(IDeviceRegistry.suspend, (deviceId));
        if (which == 3) return abi.encodeCall(IDeviceRegistry.decommission, (deviceId));
        if (which == 4) {
            return abi.encodeCall(
                IDeviceRegistry.grantPermissions, (deviceId, grantee, mask, uint64(block.timestamp + 2 days))
            );
        }
        if (which == 5) return abi.encodeCall(IDeviceRegistry.revokePermissions, (deviceId, grantee));
        uint256 deadline = block.timestamp + 1 hours;
        return abi.encodeCall(
            IDeviceRegistry.rotateKey,
            (deviceId, vm.addr(newPk), deadline, _signRotateKey(registry, newPk, deviceId, deadline))
        );
    }

    // ================================================================== decommission

    function testFuzz_Decommissioned_NeverMoves(address to, uint256 fromState) public {
        vm.assume(to != address(0) && to != owner);
        uint256 deviceId = _provisionDevice(registry, manufacturer, 0xD00D, owner, false);
        fromState = bound(fromState, 0, 2);
        vm.startPrank(owner);
        if (fromState >= 1) registry.activate(deviceId);
        if (fromState == 2) registry.suspend(deviceId);
        registry.decommission(deviceId);
        vm.expectRevert(abi.encodeWithSelector(IDeviceRegistry.DeviceIsDecommissioned.selector, deviceId));
        registry.transferFrom(owner, to, deviceId);
        vm.expectRevert(abi.encodeWithSelector(IDeviceRegistry.DeviceIsDecommissioned.selector, deviceId));
        registry.safeTransferFrom(owner, to, deviceId);
        vm.expectRevert(
            abi.encodeWithSelector(
                IDeviceRegistry.InvalidStateTransition.selector, deviceId, IDeviceRegistry.DeviceState.Decommissioned
            )
        );
        registry.activate(deviceId);
        vm.stopPrank();
        assertEq(registry.ownerOf(deviceId), owner);
        assertFalse(registry.warrantyActive(deviceId));
    }

    // ================================================================== helpers

    function _assumeCaller(address who) internal view {
        vm.assume(who != address(0) && who != address(vm) && who != CONSOLE && who != CREATE2_FACTORY);
        vm.assume(who != address(registry) && who != owner);
    }

    function _copy(IDeviceRegistry.ManufacturingRecord memory r)
        internal
        pure
        returns (IDeviceRegistry.ManufacturingRecord memory)
    {
        return IDeviceRegistry.ManufacturingRecord({
            model: r.model,
            serial: r.serial,
            firmwareHash: r.firmwareHash,
            manufacturedAt: r.manufacturedAt,
            warrantyEnd: r.warrantyEnd,
            metadataURI: r.metadataURI
        });
    }

    /// @dev A different string: one byte flipped, or one byte appended.
    function _mutate(string memory s, uint256 delta) internal pure returns (string memory) {
        bytes memory b = bytes(s);
        if (b.length > 0 && (delta >> 1) % 2 == 0) {
            bytes memory c = bytes.concat(b); // copy
            uint256 i = (delta >> 2) % c.length;
            c[i] = bytes1(uint8(c[i]) ^ uint8((delta >> 8) | 1));
            return string(c);
        }
        return string(bytes.concat(b, bytes1(uint8(delta >> 8))));
    }
}
