// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Test, console} from "forge-std/Test.sol";
import {StdUtils} from "forge-std/StdUtils.sol";
import {StdInvariant} from "forge-std/StdInvariant.sol";
import {DeviceRegistry} from "../../../contracts/DeviceRegistry.sol";
import {IDeviceRegistry} from "../../../interfaces/IDeviceRegistry.sol";
import {ThingledgerSigning} from "../utils/ThingledgerTest.sol";

/// @notice Owners grant, re-grant and revoke permissions, approve operators (token-wise or for all), who try
/// to grant and revoke (always refused: grants are the owner's alone) and who move devices (allowed),
/// transfer devices among actors (to themselves too), suspend and resume, and time passes. The ghost model
/// records every grant with the ownership epoch (ghost transfer count) it was made in.
contract GrantHandler is ThingledgerSigning, StdUtils {
    struct GhostGrant {
        uint64 mask;
        uint64 expiresAt;
        uint256 epoch;
    }

    uint256 internal constant ACTORS = 4;
    uint256 internal constant DEVICES = 3;

    DeviceRegistry public immutable registry;
    address[] public actors;
    uint256[] public devices;

    mapping(uint256 deviceId => address) public ghostOwner;
    mapping(uint256 deviceId => uint256) public ghostEpoch; // successful transfers since provisioning
    mapping(uint256 deviceId => bool) public ghostActive;
    mapping(uint256 deviceId => mapping(address grantee => GhostGrant)) internal ghostGrants;
    mapping(uint256 deviceId => address) internal ghostApproved;
    mapping(uint256 deviceId => uint256) internal ghostApprovedEpoch;
    mapping(address owner => address) internal ghostOperatorForAll;

    uint256 public ghostUnauthorizedGrantSucceeded; // a non-owner granted or revoked; must stay 0
    uint256 public ghostGrantCount;
    uint256 public ghostApprovedGrantsRefused; // refused although the caller was approved for the token
    uint256 public ghostOperatorTransfers;
    uint256 public ghostGrantsAfterTransfer;
    uint256 public ghostTransfers;
    uint256 public ghostTransfersKillingLiveGrants;
    uint256 public ghostRefusedGrants;

    /// @dev Handler calls in this run; the run-level checks in afterInvariant apply to full-length runs only
    /// (a shrunk counterexample of a few calls must fail on the invariant, not on coverage).
    uint256 public ghostCalls;

    modifier counted() {
        ++ghostCalls;
        _;
    }

    constructor(DeviceRegistry registry_) {
        registry = registry_;
    }

    function init() external {
        for (uint256 i; i < ACTORS; ++i) {
            actors.push(address(uint160(uint256(keccak256(abi.encode("grant actor", i))))));
        }
        for (uint256 i; i < DEVICES; ++i) {
            uint256 id = _provisionDevice(registry, address(this), 0x6000 + i, actors[i], true);
            devices.push(id);
            ghostOwner[id] = actors[i];
            ghostEpoch[id] = registry.getDevice(id).epoch; // 1: handed over by the manufacturer
            ghostActive[id] = true;
            // every other actor starts with a live grant, so the first transfer has grants to kill
            for (uint256 j; j < ACTORS; ++j) {
                if (j == i) continue;
                _grantAs(actors[i], id, actors[j], uint64(0xF << (4 * j)) | 1, uint64(block.timestamp + 30 days));
            }
        }
        ghostGrantCount = 0;
    }

    // ------------------------------------------------------------------ actions

    function grant(uint256 deviceSeed, uint256 granteeSeed, uint64 mask, uint256 lifetime) external counted {
        uint256 id = devices[deviceSeed % DEVICES];
        mask = uint64(_bound(mask, 1, type(uint64).max));
        _grantAs(ghostOwner[id], id, actors[granteeSeed % ACTORS], mask, _expiry(lifetime));
    }

    /// @dev A non-owner grants or revokes: always refused with NotDeviceOwner, even when it is the token's
    /// approved address of the current epoch or the owner's operator for all.
    function grantAsOther(uint256 deviceSeed, uint256 callerSeed, uint256 granteeSeed, uint64 mask, uint256 lifetime)
        external counted
    {
        uint256 id = devices[deviceSeed % DEVICES];
        address caller = _nonOwner(id, callerSeed);
        mask = uint64(_bound(mask, 1, type(uint64).max));
        bool approved = _isApproved(id, caller);
        address grantee = actors[granteeSeed % ACTORS];
        bytes memory expected = abi.encodeWithSelector(IDeviceRegistry.NotDeviceOwner.selector, id, caller);
        vm.prank(caller);
        (bool ok, bytes memory reason) = address(registry).call(
            (callerSeed >> 64) % 4 == 0
                ? abi.encodeCall(IDeviceRegistry.revokePermissions, (id, grantee))
                : abi.encodeCall(IDeviceRegistry.grantPermissions, (id, grantee, mask, _expiry(lifetime)))
        );
        if (ok || keccak256(reason) != keccak256(expected)) ++ghostUnauthorizedGrantSucceeded;
        else if (approved) ++ghostApprovedGrantsRefused;
    }

    function approveOperator(uint256 deviceSeed, uint256 opSeed) external counted {
        uint256 id = devices[deviceSeed % DEVICES];
        address owner = ghostOwner[id];
        address op = actors[opSeed % ACTORS];
        if (op == owner) op = actors[(opSeed + 1) % ACTORS];
        vm.prank(owner);
        if ((opSeed >> 128) % 2 == 0) {
            registry.approve(op, id);
            ghostApproved[id] = op;
            ghostApprovedEpoch[id] = ghostEpoch[id];
        } else {
            registry.setApprovalForAll(op, true);
            ghostOperatorForAll[owner] = op;
        }
    }

    /// @dev The approved address or operator moves the device (to any actor): transfers are what approvals
    /// are for. Kills the grants like any transfer.
    function transferByOperator(uint256 deviceSeed, uint256 toSeed) external counted {
        uint256 id = devices[deviceSeed % DEVICES];
        address from = ghostOwner[id];
        address op = ghostApproved[id];
        if (op == address(0) || op == from || ghostApprovedEpoch[id] != ghostEpoch[id]) op = ghostOperatorForAll[from];
        if (op == address(0) || op == from) return;
        _transferAs(op, id, actors[toSeed % ACTORS]);
        ++ghostOperatorTransfers;
    }

    /// @dev A caller other than the device's owner: half of the time the device's approved address or the
    /// owner's operator for all, when there is one.
    function _nonOwner(uint256 id, uint256 seed) internal view returns (address caller) {
        address owner = ghostOwner[id];
        uint256 index = seed % ACTORS;
        if (actors[index] == owner) index = (index + 1) % ACTORS;
        caller = actors[index];
        address approved = (seed >> 128) % 2 == 0 ? ghostApproved[id] : ghostOperatorForAll[owner];
        if ((seed >> 192) % 2 == 0 && approved != address(0) && approved != owner) caller = approved;
    }

    /// @dev Whether `caller` may move the token now (its approved address of this epoch, or the owner's operator).
    function _isApproved(uint256 id, address caller) internal view returns (bool) {
        return (ghostApproved[id] == caller && ghostApprovedEpoch[id] == ghostEpoch[id])
            || ghostOperatorForAll[ghostOwner[id]] == caller;
    }

    function revoke(uint256 deviceSeed, uint256 granteeSeed) external counted {
        uint256 id = devices[deviceSeed % DEVICES];
        address grantee = actors[granteeSeed % ACTORS];
        vm.prank(ghostOwner[id]);
        registry.revokePermissions(id, grantee);
        delete ghostGrants[id][grantee];
    }

    function transfer(uint256 deviceSeed, uint256 toSeed) external counted {
        _transfer(deviceSeed, toSeed);
    }

    /// @dev A second transfer entry point, so that transfers are as frequent as grants.
    function sell(uint256 deviceSeed, uint256 toSeed) external counted {
        _transfer(deviceSeed, toSeed + 1);
    }

    function suspendOrResume(uint256 deviceSeed) external counted {
        uint256 id = devices[deviceSeed % DEVICES];
        vm.prank(ghostOwner[id]);
        if (ghostActive[id]) registry.suspend(id);
        else registry.resume(id);
        ghostActive[id] = !ghostActive[id];
    }

    function warp(uint256 secondsAhead) external counted {
        vm.warp(block.timestamp + _bound(secondsAhead, 0, 1 days));
    }

    // ------------------------------------------------------------------ model

    /// @dev The model's answer: Active, and owner or a grant of the current epoch, unexpired, with all bits.
    function expectedPermission(uint256 id, address who, uint64 permission) external view returns (bool) {
        if (permission == 0 || !ghostActive[id]) return false;
        if (who == ghostOwner[id]) return true;
        GhostGrant memory g = ghostGrants[id][who];
        return g.mask != 0 && g.epoch == ghostEpoch[id] && block.timestamp <= g.expiresAt
            && g.mask & permission == permission;
    }

    function deviceAt(uint256 i) external view returns (uint256) {
        return devices[i];
    }

    function actorAt(uint256 i) external view returns (address) {
        return actors[i];
    }

    // ------------------------------------------------------------------ internals

    function _grantAs(address caller, uint256 id, address grantee, uint64 mask, uint64 expiresAt)
        internal
        returns (bool ok)
    {
        vm.prank(caller);
        try registry.grantPermissions(id, grantee, mask, expiresAt) {
            ok = true;
            if (ghostEpoch[id] > 1) ++ghostGrantsAfterTransfer;
            ++ghostGrantCount;
            ghostGrants[id][grantee] = GhostGrant(mask, expiresAt, ghostEpoch[id]);
        } catch {
            ++ghostRefusedGrants;
        }
    }

    function _transfer(uint256 deviceSeed, uint256 toSeed) internal {
        uint256 id = devices[deviceSeed % DEVICES];
        _transferAs(ghostOwner[id], id, actors[toSeed % ACTORS]); // may be to the owner itself: still a new epoch
    }

    function _transferAs(address caller, uint256 id, address to) internal {
        address from = ghostOwner[id];
        bool killed;
        for (uint256 i; i < ACTORS; ++i) {
            GhostGrant memory g = ghostGrants[id][actors[i]];
            if (g.mask != 0 && g.epoch == ghostEpoch[id] && block.timestamp <= g.expiresAt) killed = true;
        }
        vm.prank(caller);
        registry.transferFrom(from, to, id);
        ghostOwner[id] = to;
        ++ghostEpoch[id];
        ++ghostTransfers;
        if (killed) ++ghostTransfersKillingLiveGrants;
    }

    function _expiry(uint256 lifetime) internal view returns (uint64) {
        return uint64(block.timestamp + _bound(lifetime, 1, 2 days));
    }
}

/// @notice Invariant (b): no grant outlives a transfer, and only owners grant. hasPermission answers exactly
/// what the ghost model says: the current owner, or a grant made by the current owner since the last
/// transfer, unexpired, holding every bit asked, on an Active device. No approved address or operator ever
/// grants or revokes (ERC-721 approvals only move the token).
contract GrantInvariantTest is StdInvariant, Test {
    DeviceRegistry internal registry;
    GrantHandler internal handler;
    uint64[] internal probes;

    function setUp() public {
        vm.warp(1_750_000_000);
        address admin = makeAddr("admin");
        registry = new DeviceRegistry(admin);
        handler = new GrantHandler(registry);
        bytes32 role = registry.MANUFACTURER_ROLE();
        vm.prank(admin);
        registry.grantRole(role, address(handler));
        handler.init();

        probes.push(1);
        probes.push(2);
        probes.push(4);
        probes.push(8);
        probes.push(5);
        probes.push(0xF);
        probes.push(uint64(1) << 40);
        probes.push(type(uint64).max);

        bytes4[] memory selectors = new bytes4[](9);
        selectors[0] = GrantHandler.grant.selector;
        selectors[1] = GrantHandler.grantAsOther.selector;
        selectors[2] = GrantHandler.approveOperator.selector;
        selectors[3] = GrantHandler.revoke.selector;
        selectors[4] = GrantHandler.transfer.selector;
        selectors[5] = GrantHandler.sell.selector;
        selectors[6] = GrantHandler.suspendOrResume.selector;
        selectors[7] = GrantHandler.warp.selector;
        selectors[8] = GrantHandler.transferByOperator.selector;
        targetSelector(FuzzSelector({addr: address(handler), selectors: selectors}));
        targetContract(address(handler));
    }

    function invariant_HasPermissionMatchesGrantModel() public view {
        address outsider = address(0xBEEF);
        for (uint256 d; d < 3; ++d) {
            uint256 id = handler.deviceAt(d);
            assertEq(registry.ownerOf(id), handler.ghostOwner(id), "owner");
            for (uint256 a; a < 5; ++a) {
                address who = a < 4 ? handler.actorAt(a) : outsider;
                for (uint256 p; p < probes.length; ++p) {
                    bool actual = registry.hasPermission(id, who, probes[p]);
                    bool expected = handler.expectedPermission(id, who, probes[p]);
                    if (actual != expected) {
                        console.log("device", d, "actor", a);
                        console.log("probe", probes[p]);
                    }
                    assertEq(actual, expected, "hasPermission differs from the model");
                }
            }
        }
    }

    function invariant_OnlyTheOwnerGrantsOrRevokes() public view {
        assertEq(handler.ghostUnauthorizedGrantSucceeded(), 0);
    }

    function afterInvariant() public view {
        console.log("grants", handler.ghostGrantCount(), "approved callers' grants refused", handler.ghostApprovedGrantsRefused());
        console.log("transfers by approved callers", handler.ghostOperatorTransfers());
        console.log("grants after a transfer", handler.ghostGrantsAfterTransfer());
        console.log("transfers", handler.ghostTransfers(), "killing live grants", handler.ghostTransfersKillingLiveGrants());
        if (handler.ghostCalls() >= 32) {
            assertGt(handler.ghostTransfersKillingLiveGrants(), 0, "no transfer ever killed a live grant");
        }
    }
}
