// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {ICrossChainRelay} from "../interfaces/ICrossChainRelay.sol";
import {IDeviceMirror} from "../interfaces/IDeviceMirror.sol";
import {IDeviceRegistry} from "../interfaces/IDeviceRegistry.sol";

/// @title DeviceMirrorPublisher
/// @notice On chain A: sends a device's current registry record (owner, key, lifecycle state) to the
/// DeviceMirror of another chain through CrossChainRelay. Anyone may publish, since the snapshot is read from
/// the registry itself. All publications share the relay's rate limit to that chain, so each device is
/// published at most once per `publishInterval` to a chain: a snapshot equal to the last one sent to the same
/// mirror is refused within the interval (`NothingChanged`; after it, it may be sent again, which heals a lost
/// message), and a changed one too (`PublishTooSoon`) unless the device is now Decommissioned, which is final
/// and always goes at once.
/// @dev Sequences are `max(previous + 1, block.timestamp << 24)`: increasing, and a replacement publisher on
/// the same chain that first publishes in a later second than its predecessor last did continues above it
/// (given fewer than 2^24 publications a second), so the mirror does not take its snapshots for stale ones.
contract DeviceMirrorPublisher is Ownable2Step {
    /// @dev The last snapshot sent for a device to a chain, in one slot.
    struct Publication {
        bytes27 snapshotHash;
        uint40 publishedAt;
    }

    /// @notice The gas the mirror's `receiveMessage` gets on the destination.
    uint32 public constant MIRROR_GAS_LIMIT = 150_000;

    /// @notice The registry whose devices are published.
    IDeviceRegistry public immutable registry;
    /// @notice The relay that carries the snapshots.
    ICrossChainRelay public immutable relay;
    /// @notice The least time between two publications of one device to one chain (Decommissioned excepted).
    uint256 public immutable publishInterval;

    mapping(uint64 dstChainId => address mirror) private _mirrors;
    mapping(uint64 dstChainId => mapping(uint256 deviceId => Publication)) private _published;
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
    /// @notice The device's record has not changed since it was last published to that chain's mirror, less
    /// than `publishInterval` ago; it may be sent again from `availableAt`.
    error NothingChanged(uint256 deviceId, uint64 dstChainId, uint256 availableAt);
    /// @notice The device was published to that chain less than `publishInterval` ago; the next publication
    /// may go from `availableAt` (a decommissioning goes at once).
    error PublishTooSoon(uint256 deviceId, uint64 dstChainId, uint256 availableAt);

    /// @param registry_ The DeviceRegistry of this chain.
    /// @param relay_ The CrossChainRelay of this chain.
    /// @param initialOwner Sets the mirrors.
    /// @param publishInterval_ The least time between two publications of one device to one chain.
    constructor(IDeviceRegistry registry_, ICrossChainRelay relay_, address initialOwner, uint256 publishInterval_)
        Ownable(initialOwner)
    {
        if (address(registry_) == address(0) || address(relay_) == address(0)) revert ZeroAddress();
        registry = registry_;
        relay = relay_;
        publishInterval = publishInterval_;
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
        bytes27 snapshotHash = bytes27(keccak256(abi.encode(mirror, owner, device.key, device.state)));
        Publication memory last = _published[dstChainId][deviceId];
        if (last.publishedAt != 0) {
            uint256 availableAt = last.publishedAt + publishInterval;
            if (block.timestamp < availableAt) {
                if (last.snapshotHash == snapshotHash) revert NothingChanged(deviceId, dstChainId, availableAt);
                if (device.state != IDeviceRegistry.DeviceState.Decommissioned) {
                    revert PublishTooSoon(deviceId, dstChainId, availableAt);
                }
            }
        }
        _published[dstChainId][deviceId] = Publication(snapshotHash, uint40(block.timestamp));
        uint64 sequence = _nextSequence();
        IDeviceMirror.DeviceSnapshot memory snapshot =
            IDeviceMirror.DeviceSnapshot(deviceId, owner, device.key, device.state, sequence);
        messageId = relay.send(dstChainId, mirror, MIRROR_GAS_LIMIT, abi.encode(snapshot));
        emit DevicePublished(deviceId, dstChainId, messageId, owner, device.state, sequence);
    }

    /// @notice When device `deviceId` was last published to chain `dstChainId` (0: never).
    /// @param deviceId The device.
    /// @param dstChainId The chain.
    /// @return The block timestamp of the last publication.
    function lastPublishedAt(uint256 deviceId, uint64 dstChainId) external view returns (uint256) {
        return _published[dstChainId][deviceId].publishedAt;
    }

    /// @notice The mirror that chain `dstChainId`'s snapshots go to.
    /// @param dstChainId The chain.
    /// @return The mirror (zero: none).
    function mirrorOf(uint64 dstChainId) external view returns (address) {
        return _mirrors[dstChainId];
    }

    function _nextSequence() private returns (uint64 sequence) {
        uint256 fromClock = block.timestamp << 24;
        uint256 next = uint256(_sequence) + 1;
        sequence = uint64(next > fromClock ? next : fromClock);
        _sequence = sequence;
    }
}
