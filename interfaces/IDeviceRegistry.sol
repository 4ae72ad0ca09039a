// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC721} from "@openzeppelin/contracts/token/ERC721/IERC721.sol";

/// @title IDeviceRegistry
/// @notice Identity and lifecycle of IoT devices. Every device is an ERC-721 token whose id is derived
/// from the device's first key (`uint256(uint160(firstKey))`) and never changes, even when the key is
/// rotated. The device's key is an Ethereum address whose private key only the device holds.
///
/// Lifecycle (one event per transition):
///
///     provision()                activate()             suspend()
///   ─────────────> Provisioned ─────────────> Active <─────────────> Suspended
///                       │                       │        resume()        │
///                       └───────────────────────┴──── decommission() ────┴──> Decommissioned (final)
///
/// Permission bits for `grantPermissions` / `hasPermission` (see `DevicePermissions`):
///   bit 0 (1)  OPERATE    send commands to the device's actuators
///   bit 1 (2)  READ_DATA  read the device's telemetry
///   bit 2 (4)  RELEASE    have goods released through the device (warehouse gates, see SalesOrder)
///   bit 3 (8)  SERVICE    perform maintenance on the device
///   bits 4-15 reserved for thingledger; bits 16-63 free for applications.
interface IDeviceRegistry is IERC721 {
    /// @notice Where a device is in its lifecycle. `None` means the id was never provisioned.
    enum DeviceState {
        None,
        Provisioned,
        Active,
        Suspended,
        Decommissioned
    }

    /// @notice What the manufacturer records at provisioning. Emitted in full in `DeviceProvisioned`;
    /// only `warrantyEnd` is kept in storage (clients rebuild the rest from the event).
    struct ManufacturingRecord {
        string model;
        string serial;
        bytes32 firmwareHash;
        uint64 manufacturedAt;
        uint64 warrantyEnd;
        string metadataURI;
    }

    /// @notice The stored state of a device: one storage slot.
    /// @dev `nonce` is the next nonce the device must sign with; `epoch` counts ownership changes
    /// and versions the grants (a grant made in an older epoch is dead).
    struct Device {
        address key;
        DeviceState state;
        uint32 warrantyEnd;
        uint32 nonce;
        uint24 epoch;
    }

    /// @notice A device was provisioned and its token minted to `manufacturer`.
    event DeviceProvisioned(
        uint256 indexed deviceId,
        address indexed manufacturer,
        address indexed key,
        bytes32 recordHash,
        ManufacturingRecord record
    );
    /// @notice Provisioned -> Active.
    event DeviceActivated(uint256 indexed deviceId, address indexed owner);
    /// @notice Active -> Suspended.
    event DeviceSuspended(uint256 indexed deviceId, address indexed owner);
    /// @notice Suspended -> Active.
    event DeviceResumed(uint256 indexed deviceId, address indexed owner);
    /// @notice Any state -> Decommissioned (final).
    event DeviceDecommissioned(uint256 indexed deviceId, address indexed owner);
    /// @notice The device's key was replaced; everything `oldKey` signed is void.
    event DeviceKeyRotated(uint256 indexed deviceId, address indexed oldKey, address indexed newKey);
    /// @notice `grantee` holds `permissions` on the device until `expiresAt`, within ownership epoch `epoch`.
    event PermissionsGranted(
        uint256 indexed deviceId, address indexed grantee, uint64 permissions, uint64 expiresAt, uint24 epoch
    );
    /// @notice The grant of `grantee` on the device was removed by the owner.
    event PermissionsRevoked(uint256 indexed deviceId, address indexed grantee);
    /// @notice A device-signed action for contract `target` was verified and its nonce consumed.
    event DeviceActionExecuted(
        uint256 indexed deviceId, address indexed target, bytes32 indexed actionHash, uint256 nonce
    );
    /// @notice The base of `tokenURI` changed.
    event BaseURIChanged(string baseURI);

    error ZeroAddress();
    error SignatureExpired(uint256 deadline);
    error InvalidDeviceSignature(uint256 deviceId);
    error InvalidProvisioningSignature(address key);
    error KeyAlreadyUsed(address key);
    error TimestampOutOfRange(uint64 timestamp);
    error UnknownDevice(uint256 deviceId);
    error NotDeviceOwner(uint256 deviceId, address caller);
    error InvalidStateTransition(uint256 deviceId, DeviceState current);
    error DeviceNotActive(uint256 deviceId, DeviceState current);
    error DeviceIsDecommissioned(uint256 deviceId);
    error EmptyPermissions();
    error GrantAlreadyExpired(uint64 expiresAt);

    /// @notice Provisions a device: mints its token to the caller (a manufacturer) in state Provisioned.
    /// @dev The device proves the manufacturer holds it by signing the EIP-712 message
    /// `Provision(address key,address manufacturer,ManufacturingRecord record,uint256 nonce,uint256 deadline)`
    /// in this registry's domain (chain id and address bound). `nonce` is the device's nonce, which is 0
    /// for every key that was never used; provisioning consumes it, so the device's first action signs nonce 1.
    /// A key can never be provisioned twice, nor after it was rotated into or out of any device.
    /// @param key The device's address (its public identity).
    /// @param record The manufacturing record; its `warrantyEnd` must fit in uint32.
    /// @param deadline Last timestamp at which the signature is accepted.
    /// @param signature The device key's EIP-712 signature.
    /// @return deviceId The token id, `uint256(uint160(key))`.
    function provision(
        address key,
        ManufacturingRecord calldata record,
        uint256 deadline,
        bytes calldata signature
    ) external returns (uint256 deviceId);

    /// @notice Provisioned -> Active. Called by the owner, normally the first owner. Lifecycle, grant and key
    /// functions are the owner's alone: ERC-721 approvals only move the token.
    /// @param deviceId The device.
    function activate(uint256 deviceId) external;

    /// @notice Active -> Suspended: the device can no longer act and its grants stop answering.
    /// @param deviceId The device.
    function suspend(uint256 deviceId) external;

    /// @notice Suspended -> Active.
    /// @param deviceId The device.
    function resume(uint256 deviceId) external;

    /// @notice Any state -> Decommissioned. Final: the token can no longer move, the device can no longer act,
    /// every grant is dead, and its keys stay burnt.
    /// @param deviceId The device.
    function decommission(uint256 deviceId) external;

    /// @notice Grants `grantee` the permission bits `permissions` on the device until `expiresAt`,
    /// replacing any earlier grant. The grant dies when the device changes owner or is decommissioned.
    /// @param deviceId The device.
    /// @param grantee Who receives the permissions.
    /// @param permissions Bitmask, see the interface documentation.
    /// @param expiresAt Timestamp after which the grant no longer answers; must be in the future.
    function grantPermissions(uint256 deviceId, address grantee, uint64 permissions, uint64 expiresAt) external;

    /// @notice Removes the grant of `grantee` on the device.
    /// @param deviceId The device.
    /// @param grantee Whose grant is removed.
    function revokePermissions(uint256 deviceId, address grantee) external;

    /// @notice Verifies and consumes a device-signed action for the calling contract, so that devices act
    /// without holding gas money: anyone submits, the device only signs.
    /// @dev The device signs `DeviceAction(uint256 deviceId,address target,bytes32 action,uint256 nonce,uint256 deadline)`
    /// in this registry's domain, with `target` the contract that calls this function, `action` the EIP-712
    /// struct hash of what the target will do, and `nonce` the device's current nonce. Reverts unless the
    /// device is Active and the signature is by its current key.
    /// @param deviceId The acting device.
    /// @param action The struct hash of the target's action.
    /// @param deadline Last timestamp at which the signature is accepted.
    /// @param signature The device key's EIP-712 signature.
    function useDeviceAction(uint256 deviceId, bytes32 action, uint256 deadline, bytes calldata signature) external;

    /// @notice Replaces the device's key. Called by the owner with the new key's signature of
    /// `RotateKey(uint256 deviceId,address newKey,uint256 nonce,uint256 deadline)`; consumes the device's nonce,
    /// so nothing the old key signed can be submitted any more.
    /// @param deviceId The device.
    /// @param newKey The new key; it must never have been used by any device.
    /// @param deadline Last timestamp at which the signature is accepted.
    /// @param signature The new key's EIP-712 signature.
    function rotateKey(uint256 deviceId, address newKey, uint256 deadline, bytes calldata signature) external;

    /// @notice True when `who` may use `permission` (every bit of it) on an Active device: the owner
    /// holds every permission, anyone else needs a live grant of the current ownership epoch.
    /// @param deviceId The device.
    /// @param who The address asking.
    /// @param permission The permission bits wanted.
    /// @return Whether all bits are held.
    function hasPermission(uint256 deviceId, address who, uint64 permission) external view returns (bool);

    /// @notice The grant of `grantee` on the device as stored, and whether it is live now.
    /// @param deviceId The device.
    /// @param grantee The grantee.
    /// @return permissions The granted bits.
    /// @return expiresAt When the grant expires.
    /// @return live Whether it belongs to the current ownership epoch, is unexpired and the device is Active.
    function grantOf(uint256 deviceId, address grantee)
        external
        view
        returns (uint64 permissions, uint64 expiresAt, bool live);

    /// @notice True while the device is not decommissioned and its warranty has not ended.
    /// @param deviceId The device.
    /// @return Whether the warranty holds now.
    function warrantyActive(uint256 deviceId) external view returns (bool);

    /// @notice The stored state of a device (all zero for an unknown id).
    /// @param deviceId The device.
    /// @return The device's slot.
    function getDevice(uint256 deviceId) external view returns (Device memory);

    /// @notice The device whose current key is `key`, or 0.
    /// @param key A device key.
    /// @return The device id, or 0 when `key` is not the current key of any device.
    function deviceIdOfKey(address key) external view returns (uint256);

    /// @notice Whether `key` was ever used by a device (provisioned or rotated in), so it can never be used again.
    /// @param key The key.
    /// @return Whether it is burnt.
    function isKeyUsed(address key) external view returns (bool);

    /// @notice The EIP-712 struct hash of a manufacturing record, as emitted in `DeviceProvisioned`.
    /// @param record The record.
    /// @return Its struct hash.
    function hashRecord(ManufacturingRecord calldata record) external pure returns (bytes32);
}
