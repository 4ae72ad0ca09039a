// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {IDeviceMirror} from "../interfaces/IDeviceMirror.sol";
import {IDeviceRegistry} from "../interfaces/IDeviceRegistry.sol";
import {RelayRecipient} from "./RelayRecipient.sol";

/// @title DeviceMirror
/// @notice The admission list of chain B: the newest snapshot of each device of chain A's DeviceRegistry,
/// delivered by CrossChainRelay from a trusted DeviceMirrorPublisher. A device is admitted while its
/// snapshot says Active. See IDeviceMirror.
/// @dev Trust one publisher: device ids are those of its registry.
contract DeviceMirror is IDeviceMirror, RelayRecipient, Ownable2Step {
    /// @dev Two slots per device.
    struct Entry {
        address owner;
        uint64 sequence;
        IDeviceRegistry.DeviceState state;
        address key;
    }

    mapping(uint256 deviceId => Entry) private _entries;
    mapping(address key => uint256 deviceId) private _deviceOfKey;

    /// @param relay_ The CrossChainRelay of this chain.
    /// @param initialOwner Chooses the trusted publisher.
    constructor(address relay_, address initialOwner) RelayRecipient(relay_) Ownable(initialOwner) {}

    /// @inheritdoc IDeviceMirror
    function setTrustedPublisher(uint64 srcChainId, address publisher, bool trusted) external onlyOwner {
        _setTrustedSender(srcChainId, publisher, trusted);
    }

    /// @inheritdoc IDeviceMirror
    function isAdmitted(uint256 deviceId) external view returns (bool) {
        return _entries[deviceId].state == IDeviceRegistry.DeviceState.Active;
    }

    /// @inheritdoc IDeviceMirror
    function admittedDeviceOfKey(address key) external view returns (uint256 deviceId) {
        deviceId = _deviceOfKey[key];
        if (deviceId == 0) return 0;
        Entry storage entry = _entries[deviceId];
        if (entry.key != key || entry.state != IDeviceRegistry.DeviceState.Active) return 0;
    }

    /// @inheritdoc IDeviceMirror
    function snapshotOf(uint256 deviceId) external view returns (DeviceSnapshot memory) {
        Entry memory entry = _entries[deviceId];
        return DeviceSnapshot(entry.sequence == 0 ? 0 : deviceId, entry.owner, entry.key, entry.state, entry.sequence);
    }

    function _receiveMessage(bytes32 id, uint64, address, bytes calldata payload) internal override {
        DeviceSnapshot memory snapshot = abi.decode(payload, (DeviceSnapshot));
        Entry storage entry = _entries[snapshot.deviceId];
        uint64 held = entry.sequence;
        if (snapshot.sequence <= held) {
            emit StaleSnapshotIgnored(snapshot.deviceId, snapshot.sequence, held);
            return;
        }
        address oldKey = entry.key;
        if (oldKey != snapshot.key) {
            if (oldKey != address(0)) delete _deviceOfKey[oldKey];
            _deviceOfKey[snapshot.key] = snapshot.deviceId;
        }
        _entries[snapshot.deviceId] = Entry(snapshot.owner, snapshot.sequence, snapshot.state, snapshot.key);
        emit DeviceMirrored(snapshot.deviceId, snapshot.owner, snapshot.key, snapshot.state, snapshot.sequence, id);
    }
}
