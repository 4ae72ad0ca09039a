// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Test, console} from "forge-std/Test.sol";
import {StdUtils} from "forge-std/StdUtils.sol";
import {StdInvariant} from "forge-std/StdInvariant.sol";
import {DeviceRegistry} from "../../../contracts/DeviceRegistry.sol";
import {IDeviceRegistry} from "../../../interfaces/IDeviceRegistry.sol";
import {ThingledgerSigning} from "../utils/ThingledgerTest.sol";

/// @notice Drives a registry with a few actors and devices: transfers (plain, safe, by approved operators),
/// device actions, lifecycle calls, grants, key rotations and decommissions. Half of the time the targeted
/// device is a decommissioned one, so that attacks on decommissioned devices are frequent.
contract DecommissionHandler is ThingledgerSigning, StdUtils {
    DeviceRegistry public immutable registry;
    address[] internal actors;
    uint256[] internal devices;
    mapping(uint256 deviceId => uint256 pk) internal keyPk;
    uint256 internal nextPk = 0xD1000;

    // ghost state, recorded at decommission
    mapping(uint256 deviceId => bool) public ghostDecommissioned;
    mapping(uint256 deviceId => IDeviceRegistry.Device) internal ghostFrozen;
    mapping(uint256 deviceId => address) public ghostFrozenOwner;

    uint256 public ghostAttemptsOnDecommissioned;
    uint256 public ghostSucceededOnDecommissioned; // must stay 0
    uint256 public ghostSucceededOnLive;
    uint256 public ghostDecommissions;

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

    /// @dev Called once by the suite after this handler received MANUFACTURER_ROLE.
    function init() external {
        for (uint256 i; i < 3; ++i) {
            actors.push(address(uint160(uint256(keccak256(abi.encode("actor", i))))));
        }
        for (uint256 i; i < 6; ++i) {
            uint256 pk = nextPk++;
            // devices 0..3 Active, 4..5 Provisioned
            uint256 id = _provisionDevice(registry, address(this), pk, actors[i % 3], i < 4);
            devices.push(id);
            keyPk[id] = pk;
        }
        // Device 0 has a live grant and an approved operator, then is decommissioned: every run starts with
        // one decommissioned device.
        vm.startPrank(actors[0]);
        registry.grantPermissions(devices[0], actors[1], type(uint64).max, uint64(block.timestamp + 365 days));
        registry.approve(actors[2], devices[0]);
        registry.decommission(devices[0]);
        vm.stopPrank();
        _freeze(devices[0]);
    }

    // ------------------------------------------------------------------ actions

    function transfer(uint256 deviceSeed, uint256 toSeed, bool safe) external counted {
        uint256 id = _pickDevice(deviceSeed);
        address from = registry.ownerOf(id);
        address to = actors[toSeed % actors.length];
        bool ok;
        vm.prank(from);
        if (safe) {
            try registry.safeTransferFrom(from, to, id) {
                ok = true;
            } catch {}
        } else {
            try registry.transferFrom(from, to, id) {
                ok = true;
            } catch {}
        }
        _record(id, ok);
    }

    /// @dev The owner (re-)approves an operator, token-wise or for all; the operator then moves the device.
    function transferByOperator(uint256 deviceSeed, uint256 opSeed, uint256 toSeed, bool forAll) external counted {
        uint256 id = _pickDevice(deviceSeed);
        address from = registry.ownerOf(id);
        address op = actors[opSeed % actors.length];
        if (op == from) op = actors[(opSeed % actors.length + 1) % actors.length];
        vm.startPrank(from);
        if (forAll) registry.setApprovalForAll(op, true);
        else registry.approve(op, id); // approving is not moving: allowed even when decommissioned
        vm.stopPrank();
        bool ok;
        vm.prank(op);
        try registry.transferFrom(from, actors[toSeed % actors.length], id) {
            ok = true;
        } catch {}
        _record(id, ok);
    }

    /// @dev The device signs a perfect action with its current key and nonce; this handler submits it.
    function deviceAction(uint256 deviceSeed, bytes32 action) external counted {
        uint256 id = _pickDevice(deviceSeed);
        bytes memory sig = _signDeviceAction(registry, keyPk[id], id, address(this), action, block.timestamp);
        bool ok;
        try registry.useDeviceAction(id, action, block.timestamp, sig) {
            ok = true;
        } catch {}
        _record(id, ok);
    }

    function lifecycle(uint256 deviceSeed, uint256 which) external counted {
        uint256 id = _pickDevice(deviceSeed);
        address owner = registry.ownerOf(id);
        which = which % 3;
        bool ok;
        vm.prank(owner);
        if (which == 0) {
            try registry.activate(id) {
                ok = true;
            } catch {}
        } else if (which == 1) {
            try registry.suspend(id) {
                ok = true;
            } catch {}
        } else {
            try registry.resume(id) {
                ok = true;
            } catch {}
        }
        _record(id, ok);
    }

    function grant(uint256 deviceSeed, uint256 granteeSeed, uint64 mask) external counted {
        uint256 id = _pickDevice(deviceSeed);
        address owner = registry.ownerOf(id);
        mask = uint64(_bound(mask, 1, type(uint64).max));
        bool ok;
        vm.prank(owner);
        try registry.grantPermissions(id, actors[granteeSeed % actors.length], mask, uint64(block.timestamp + 1 days))
        {
            ok = true;
        } catch {}
        _record(id, ok);
    }

    function rotateKey(uint256 deviceSeed) external counted {
        uint256 id = _pickDevice(deviceSeed);
        address owner = registry.ownerOf(id);
        uint256 newPk = nextPk++;
        bytes memory sig = _signRotateKey(registry, newPk, id, block.timestamp);
        bool ok;
        vm.prank(owner);
        try registry.rotateKey(id, vm.addr(newPk), block.timestamp, sig) {
            ok = true;
            keyPk[id] = newPk;
        } catch {}
        _record(id, ok);
    }

    /// @dev Decommissions a live device one time in four; otherwise decommissions a decommissioned one again.
    function decommission(uint256 deviceSeed, uint256 roll) external counted {
        uint256 id = roll % 4 == 0 ? devices[deviceSeed % devices.length] : _pickDevice(deviceSeed);
        bool wasDecommissioned = ghostDecommissioned[id];
        bool ok;
        vm.prank(registry.ownerOf(id));
        try registry.decommission(id) {
            ok = true;
        } catch {}
        _record(id, ok);
        if (ok && !wasDecommissioned) {
            ++ghostDecommissions;
            _freeze(id);
        }
    }

    function warp(uint256 secondsAhead) external counted {
        vm.warp(block.timestamp + _bound(secondsAhead, 0, 3 days));
    }

    // ------------------------------------------------------------------ views for the suite

    function deviceCount() external view returns (uint256) {
        return devices.length;
    }

    function deviceAt(uint256 i) external view returns (uint256) {
        return devices[i];
    }

    function frozen(uint256 id) external view returns (IDeviceRegistry.Device memory) {
        return ghostFrozen[id];
    }

    // ------------------------------------------------------------------ internals

    /// @dev Half of the time a decommissioned device (there is always one), otherwise any device.
    function _pickDevice(uint256 seed) internal view returns (uint256) {
        uint256 n = devices.length;
        uint256 start = seed % n;
        if ((seed >> 128) % 2 == 0) {
            for (uint256 i; i < n; ++i) {
                uint256 id = devices[(start + i) % n];
                if (ghostDecommissioned[id]) return id;
            }
        }
        return devices[start];
    }

    function _record(uint256 id, bool ok) internal {
        if (ghostDecommissioned[id]) {
            ++ghostAttemptsOnDecommissioned;
            if (ok) ++ghostSucceededOnDecommissioned;
        } else if (ok) {
            ++ghostSucceededOnLive;
        }
    }

    function _freeze(uint256 id) internal {
        ghostDecommissioned[id] = true;
        ghostFrozen[id] = registry.getDevice(id);
        ghostFrozenOwner[id] = registry.ownerOf(id);
    }
}

/// @notice Invariant (a): a decommissioned device never acts or moves again.
contract DecommissionInvariantTest is StdInvariant, Test {
    DeviceRegistry internal registry;
    DecommissionHandler internal handler;

    function setUp() public {
        vm.warp(1_750_000_000);
        address admin = makeAddr("admin");
        registry = new DeviceRegistry(admin);
        handler = new DecommissionHandler(registry);
        bytes32 role = registry.MANUFACTURER_ROLE();
        vm.prank(admin);
        registry.grantRole(role, address(handler));
        handler.init();

        bytes4[] memory selectors = new bytes4[](8);
        selectors[0] = DecommissionHandler.transfer.selector;
        selectors[1] = DecommissionHandler.transferByOperator.selector;
        selectors[2] = DecommissionHandler.deviceAction.selector;
        selectors[3] = DecommissionHandler.lifecycle.selector;
        selectors[4] = DecommissionHandler.grant.selector;
        selectors[5] = DecommissionHandler.rotateKey.selector;
        selectors[6] = DecommissionHandler.decommission.selector;
        selectors[7] = DecommissionHandler.warp.selector;
        targetSelector(FuzzSelector({addr: address(handler), selectors: selectors}));
        targetContract(address(handler));
    }

    /// @dev Owner, key, nonce, epoch and state of a decommissioned device are exactly what they were at
    /// decommission, and its key still resolves to it.
    function invariant_DecommissionedDeviceIsFrozen() public view {
        uint256 n = handler.deviceCount();
        for (uint256 i; i < n; ++i) {
            uint256 id = handler.deviceAt(i);
            IDeviceRegistry.Device memory now_ = registry.getDevice(id);
            if (!handler.ghostDecommissioned(id)) {
                assertTrue(now_.state != IDeviceRegistry.DeviceState.Decommissioned, "decommissioned behind our back");
                continue;
            }
            IDeviceRegistry.Device memory then_ = handler.frozen(id);
            assertEq(uint8(now_.state), uint8(IDeviceRegistry.DeviceState.Decommissioned), "state");
            assertEq(registry.ownerOf(id), handler.ghostFrozenOwner(id), "owner moved");
            assertEq(now_.key, then_.key, "key changed");
            assertEq(now_.nonce, then_.nonce, "nonce moved (device acted)");
            assertEq(now_.epoch, then_.epoch, "epoch moved (ownership changed)");
            assertEq(registry.deviceIdOfKey(now_.key), id, "key no longer resolves");
            assertFalse(registry.warrantyActive(id), "warranty");
        }
    }

    function invariant_NoOperationOnDecommissionedSucceeded() public view {
        assertEq(handler.ghostSucceededOnDecommissioned(), 0);
    }

    /// @dev Shows the run reached the interesting state: decommissioned devices were attacked.
    function afterInvariant() public view {
        console.log("attempts on decommissioned", handler.ghostAttemptsOnDecommissioned());
        console.log("successes on live devices", handler.ghostSucceededOnLive());
        console.log("decommissions during run", handler.ghostDecommissions());
        if (handler.ghostCalls() >= 32) {
            assertGt(handler.ghostAttemptsOnDecommissioned(), 0, "no attempt on a decommissioned device");
        }
    }
}
