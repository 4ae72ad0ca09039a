// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {ICrossChainRelay} from "../interfaces/ICrossChainRelay.sol";
import {IDeviceMirror} from "../interfaces/IDeviceMirror.sol";
import {IDeviceRegistry} from "../interfaces/IDeviceRegistry.sol";

/// @title DeviceMirrorPublisher
/// @notice On chain A: sends a device's current registry record (owner, key, lifecycle state) to the
/// DeviceMirror of another chain through CrossChainRelay. Anyone may publish, since the snapshot is read from
/// the registry itself; a snapshot equal to the last one sent to that chain is refused, so publishing costs
/// a real change on the registry.
contract DeviceMirrorPublisher is Ownable2Step {
    /// @notice The gas the mirror's `receiveMessage` gets on the destination.
    uint32 public constant MIRROR_GAS_LIMIT = 150_000;

    /// @notice The registry whose devices are published.
    IDeviceRegistry public immutable registry;
    /// @notice The relay that carries the snapshots.
    ICrossChainRelay public immutable relay;

    mapping(uint64 dstChainId => address mirror) private _mirrors;
    mapping(uint64 dstChainId => mapping(uint256 deviceId => bytes32 snapshotHash)) private _published;
    uint64 private _sequence;

    /// @notice The owner set the mirror of chain `dstChainId` (zero: none).
    event MirrorSet(uint64 indexed dstChainId, address indexed mirror);
    /// @notice A snapshot of device `deviceId` was sent to chain `dstChainId` in relay message `messageId`.
    event DevicePublished(
        uint256 indexed deviceId,
        uint64 indexed dstChainId,
        bytes32 indexed messageId,
        address owner,
        IDeviceRegistry.DeviceState state,
        uint64 sequence
    );

    error ZeroAddress();
    error UnknownDevice(uint256 deviceId);
    error NoMirror(uint64 dstChainId);
    /// @notice The device's record has not changed since it was last published to that chain.
    error NothingChanged(uint256 deviceId, uint64 dstChainId);

    /// @param registry_ The DeviceRegistry of this chain.
    /// @param relay_ The CrossChainRelay of this chain.
    /// @param initialOwner Sets the mirrors.
    constructor(IDeviceRegistry registry_, ICrossChainRelay relay_, address initialOwner) Ownable(initialOwner) {
        if (address(registry_) == address(0) || address(relay_) == address(0)) revert ZeroAddress();
        registry = registry_;
        relay = relay_;
    }

    /// @notice Sets the DeviceMirror that chain `dstChainId`'s snapshots go to. Owner only.
    /// @param dstChainId The mirror's chain.
    /// @param mirror The mirror (zero stops publishing to that chain).
    function setMirror(uint64 dstChainId, address mirror) external onlyOwner {
        _mirrors[dstChainId] = mirror;
        emit MirrorSet(dstChainId, mirror);
    }

    /// @notice Sends device `deviceId`'s current owner, key and state to chain `dstChainId`'s mirror.
    /// Anyone may call.
    /// @param deviceId The device.
    /// @param dstChainId The chain to mirror it to.
    /// @return messageId The relay message carrying the snapshot.
    function publish(uint256 deviceId, uint64 dstChainId) external returns (bytes32 messageId) {
        address mirror = _mirrors[dstChainId];
        if (mirror == address(0)) revert NoMirror(dstChainId);
        IDeviceRegistry.Device memory device = registry.getDevice(deviceId);
        if (device.state == IDeviceRegistry.DeviceState.None) revert UnknownDevice(deviceId);
        address owner = registry.ownerOf(deviceId);
        bytes32 snapshotHash = keccak256(abi.encode(owner, device.key, device.state));
        if (_published[dstChainId][deviceId] == snapshotHash) revert NothingChanged(deviceId, dstChainId);
        _published[dstChainId][deviceId] = snapshotHash;
        uint64 sequence = ++_sequence;
        IDeviceMirror.DeviceSnapshot memory snapshot =
            IDeviceMirror.DeviceSnapshot(deviceId, owner, device.key, device.state, sequence);
        messageId = relay.send(dstChainId, mirror, MIRROR_GAS_LIMIT, abi.encode(snapshot));
        emit DevicePublished(deviceId, dstChainId, messageId, owner, device.state, sequence);
    }

    /// @notice The mirror that chain `dstChainId`'s snapshots go to.
    /// @param dstChainId The chain.
    /// @return The mirror (zero: none).
    function mirrorOf(uint64 dstChainId) external view returns (address) {
        return _mirrors[dstChainId];
    }
}
