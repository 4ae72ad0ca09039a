// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IDeviceRegistry} from "./IDeviceRegistry.sol";

/// @title IDeviceMirror
/// @notice Devices of a DeviceRegistry on one chain (the public chain, A), mirrored through CrossChainRelay
/// to an admission list on another (the owner's permissioned chain, B). On A, `DeviceMirrorPublisher.publish`
/// reads a device from the registry and sends a snapshot; on B, `DeviceMirror` keeps the newest snapshot of
/// each device and admits the Active ones. An owner change or a decommissioning on A takes effect on B once
/// it is published and delivered.
interface IDeviceMirror {
    /// @notice A device as the registry on chain A held it when it was published; the relay payload is
    /// `abi.encode(DeviceSnapshot)`. `sequence` increases with every publication (and continues above a
    /// replaced publisher's, see DeviceMirrorPublisher), so the mirror keeps the newest snapshot even if messages
    /// arrive out of order.
    struct DeviceSnapshot {
        uint256 deviceId;
        address owner;
        address key;
        IDeviceRegistry.DeviceState state;
        uint64 sequence;
    }

    /// @notice The mirror now holds this snapshot of device `deviceId` (delivered in relay message `messageId`).
    event DeviceMirrored(
        uint256 indexed deviceId,
        address indexed owner,
        address indexed key,
        IDeviceRegistry.DeviceState state,
        uint64 sequence,
        bytes32 messageId
    );
    /// @notice A snapshot older than the one held arrived late and was ignored.
    event StaleSnapshotIgnored(uint256 indexed deviceId, uint64 sequence, uint64 heldSequence);

    /// @notice Whether device `deviceId` is admitted: its newest snapshot says Active.
    /// @param deviceId The device (its registry id on chain A).
    /// @return Whether it is admitted.
    function isAdmitted(uint256 deviceId) external view returns (bool);

    /// @notice The admitted device whose current key is `key`, or 0 when there is none.
    /// @param key A device key.
    /// @return deviceId The device, 0 when the key belongs to no admitted device.
    function admittedDeviceOfKey(address key) external view returns (uint256 deviceId);

    /// @notice The newest snapshot of device `deviceId` (all zero when none arrived).
    /// @param deviceId The device.
    /// @return The snapshot.
    function snapshotOf(uint256 deviceId) external view returns (DeviceSnapshot memory);

    /// @notice Trusts (or stops trusting) a DeviceMirrorPublisher on chain `srcChainId`. Owner only.
    /// @param srcChainId The publisher's chain.
    /// @param publisher The publisher.
    /// @param trusted Whether its snapshots are accepted.
    function setTrustedPublisher(uint64 srcChainId, address publisher, bool trusted) external;
}
