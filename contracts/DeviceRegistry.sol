// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {IERC165} from "@openzeppelin/contracts/utils/introspection/IERC165.sol";
import {IDeviceRegistry} from "../interfaces/IDeviceRegistry.sol";

/// @title DeviceRegistry
/// @notice Device identity and lifecycle: manufacturers provision devices (ERC-721 tokens) with the device's
/// own signature, owners activate, suspend, decommission, admit others through expiring permission grants,
/// and rotate keys; devices act through EIP-712 signatures that anyone may submit.
/// @dev See IDeviceRegistry for the state machine and the permission bits. A device is one storage slot
/// (key, state, warranty end, nonce, ownership epoch); grants are versioned by the epoch, so a transfer
/// kills every grant without looping over them.
contract DeviceRegistry is IDeviceRegistry, ERC721, AccessControl, EIP712 {
    /// @notice Role of the accounts allowed to provision devices; granted and revoked by the admin.
    bytes32 public constant MANUFACTURER_ROLE = keccak256("MANUFACTURER_ROLE");

    bytes32 private constant RECORD_TYPEHASH = keccak256(
        "ManufacturingRecord(string model,string serial,bytes32 firmwareHash,uint64 manufacturedAt,uint64 warrantyEnd,string metadataURI)"
    );
    bytes32 private constant PROVISION_TYPEHASH = keccak256(
        "Provision(address key,address manufacturer,ManufacturingRecord record,uint256 nonce,uint256 deadline)"
        "ManufacturingRecord(string model,string serial,bytes32 firmwareHash,uint64 manufacturedAt,uint64 warrantyEnd,string metadataURI)"
    );
    bytes32 private constant DEVICE_ACTION_TYPEHASH =
        keccak256("DeviceAction(uint256 deviceId,address target,bytes32 action,uint256 nonce,uint256 deadline)");
    bytes32 private constant ROTATE_KEY_TYPEHASH =
        keccak256("RotateKey(uint256 deviceId,address newKey,uint256 nonce,uint256 deadline)");

    /// @dev A grant packs into one slot; it is live only while `epoch` equals the device's epoch.
    struct Grant {
        uint64 permissions;
        uint64 expiresAt;
        uint24 epoch;
    }

    mapping(uint256 deviceId => Device) private _devices;
    mapping(uint256 deviceId => mapping(address grantee => Grant)) private _grants;
    /// @dev Keys rotated into a device. First keys need no entry: a device's id is its first key.
    mapping(address key => uint256 deviceId) private _rotatedKeyDevice;
    string private _baseTokenURI;

    /// @param admin Receives DEFAULT_ADMIN_ROLE (grants and revokes MANUFACTURER_ROLE).
    constructor(address admin) ERC721("thingledger Device", "TLDEV") EIP712("thingledger DeviceRegistry", "1") {
        if (admin == address(0)) revert ZeroAddress();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    // ------------------------------------------------------------------ provisioning

    /// @inheritdoc IDeviceRegistry
    function provision(address key, ManufacturingRecord calldata record, uint256 deadline, bytes calldata signature)
        external
        onlyRole(MANUFACTURER_ROLE)
        returns (uint256 deviceId)
    {
        if (key == address(0)) revert ZeroAddress();
        if (block.timestamp > deadline) revert SignatureExpired(deadline);
        if (record.warrantyEnd > type(uint32).max) revert TimestampOutOfRange(record.warrantyEnd);
        deviceId = uint256(uint160(key));
        if (_devices[deviceId].state != DeviceState.None || _rotatedKeyDevice[key] != 0) revert KeyAlreadyUsed(key);

        bytes32 recordHash = _hashRecord(record);
        bytes32 digest = _hashTypedDataV4(
            keccak256(abi.encode(PROVISION_TYPEHASH, key, msg.sender, recordHash, uint256(0), deadline))
        );
        if (_recover(digest, signature) != key) revert InvalidProvisioningSignature(key);

        // Provisioning consumes the device's nonce 0.
        _devices[deviceId] = Device({
            key: key,
            state: DeviceState.Provisioned,
            warrantyEnd: uint32(record.warrantyEnd),
            nonce: 1,
            epoch: 0
        });
        _mint(msg.sender, deviceId);
        emit DeviceProvisioned(deviceId, msg.sender, key, recordHash, record);
    }

    // ------------------------------------------------------------------ lifecycle

    /// @inheritdoc IDeviceRegistry
    function activate(uint256 deviceId) external {
        address owner = _requireOwner(deviceId);
        _transition(deviceId, DeviceState.Provisioned, DeviceState.Active);
        emit DeviceActivated(deviceId, owner);
    }

    /// @inheritdoc IDeviceRegistry
    function suspend(uint256 deviceId) external {
        address owner = _requireOwner(deviceId);
        _transition(deviceId, DeviceState.Active, DeviceState.Suspended);
        emit DeviceSuspended(deviceId, owner);
    }

    /// @inheritdoc IDeviceRegistry
    function resume(uint256 deviceId) external {
        address owner = _requireOwner(deviceId);
        _transition(deviceId, DeviceState.Suspended, DeviceState.Active);
        emit DeviceResumed(deviceId, owner);
    }

    /// @inheritdoc IDeviceRegistry
    function decommission(uint256 deviceId) external {
        address owner = _requireOwner(deviceId);
        Device storage device = _devices[deviceId];
        if (device.state == DeviceState.Decommissioned) {
            revert InvalidStateTransition(deviceId, DeviceState.Decommissioned);
        }
        device.state = DeviceState.Decommissioned;
        emit DeviceDecommissioned(deviceId, owner);
    }

    // ------------------------------------------------------------------ admission control

    /// @inheritdoc IDeviceRegistry
    function grantPermissions(uint256 deviceId, address grantee, uint64 permissions, uint64 expiresAt) external {
        _requireOwner(deviceId);
        if (grantee == address(0)) revert ZeroAddress();
        if (permissions == 0) revert EmptyPermissions();
        if (expiresAt <= block.timestamp) revert GrantAlreadyExpired(expiresAt);
        Device storage device = _devices[deviceId];
        if (device.state == DeviceState.Decommissioned) revert DeviceIsDecommissioned(deviceId);
        uint24 epoch = device.epoch;
        _grants[deviceId][grantee] = Grant({permissions: permissions, expiresAt: expiresAt, epoch: epoch});
        emit PermissionsGranted(deviceId, grantee, permissions, expiresAt, epoch);
    }

    /// @inheritdoc IDeviceRegistry
    function revokePermissions(uint256 deviceId, address grantee) external {
        _requireOwner(deviceId);
        delete _grants[deviceId][grantee];
        emit PermissionsRevoked(deviceId, grantee);
    }

    /// @inheritdoc IDeviceRegistry
    function hasPermission(uint256 deviceId, address who, uint64 permission) external view returns (bool) {
        if (permission == 0 || _devices[deviceId].state != DeviceState.Active) return false;
        if (_ownerOf(deviceId) == who) return true;
        Grant memory grant = _grants[deviceId][who];
        return _isLive(deviceId, grant) && grant.permissions & permission == permission;
    }

    /// @inheritdoc IDeviceRegistry
    function grantOf(uint256 deviceId, address grantee)
        external
        view
        returns (uint64 permissions, uint64 expiresAt, bool live)
    {
        Grant memory grant = _grants[deviceId][grantee];
        return (grant.permissions, grant.expiresAt, _devices[deviceId].state == DeviceState.Active && _isLive(deviceId, grant));
    }

    // ------------------------------------------------------------------ device-signed actions and keys

    /// @inheritdoc IDeviceRegistry
    function useDeviceAction(uint256 deviceId, bytes32 action, uint256 deadline, bytes calldata signature) external {
        if (block.timestamp > deadline) revert SignatureExpired(deadline);
        Device storage device = _devices[deviceId];
        Device memory current = device;
        if (current.state != DeviceState.Active) revert DeviceNotActive(deviceId, current.state);
        uint256 nonce = current.nonce;
        bytes32 digest = _hashTypedDataV4(
            keccak256(abi.encode(DEVICE_ACTION_TYPEHASH, deviceId, msg.sender, action, nonce, deadline))
        );
        if (_recover(digest, signature) != current.key) revert InvalidDeviceSignature(deviceId);
        device.nonce = current.nonce + 1;
        emit DeviceActionExecuted(deviceId, msg.sender, action, nonce);
    }

    /// @inheritdoc IDeviceRegistry
    function rotateKey(uint256 deviceId, address newKey, uint256 deadline, bytes calldata signature) external {
        _requireOwner(deviceId);
        if (newKey == address(0)) revert ZeroAddress();
        if (block.timestamp > deadline) revert SignatureExpired(deadline);
        if (isKeyUsed(newKey)) revert KeyAlreadyUsed(newKey);
        Device storage device = _devices[deviceId];
        Device memory current = device;
        if (current.state == DeviceState.Decommissioned) revert DeviceIsDecommissioned(deviceId);
        bytes32 digest = _hashTypedDataV4(
            keccak256(abi.encode(ROTATE_KEY_TYPEHASH, deviceId, newKey, uint256(current.nonce), deadline))
        );
        if (_recover(digest, signature) != newKey) revert InvalidDeviceSignature(deviceId);
        device.key = newKey;
        device.nonce = current.nonce + 1;
        _rotatedKeyDevice[newKey] = deviceId;
        emit DeviceKeyRotated(deviceId, current.key, newKey);
    }

    // ------------------------------------------------------------------ views

    /// @inheritdoc IDeviceRegistry
    function warrantyActive(uint256 deviceId) external view returns (bool) {
        Device memory device = _devices[deviceId];
        return device.state != DeviceState.None && device.state != DeviceState.Decommissioned
            && block.timestamp <= device.warrantyEnd;
    }

    /// @inheritdoc IDeviceRegistry
    function getDevice(uint256 deviceId) external view returns (Device memory) {
        return _devices[deviceId];
    }

    /// @inheritdoc IDeviceRegistry
    function deviceIdOfKey(address key) external view returns (uint256) {
        uint256 deviceId = _rotatedKeyDevice[key];
        if (deviceId == 0) deviceId = uint256(uint160(key));
        return key != address(0) && _devices[deviceId].key == key ? deviceId : 0;
    }

    /// @inheritdoc IDeviceRegistry
    function isKeyUsed(address key) public view returns (bool) {
        return _devices[uint256(uint160(key))].state != DeviceState.None || _rotatedKeyDevice[key] != 0;
    }

    /// @inheritdoc IDeviceRegistry
    function hashRecord(ManufacturingRecord calldata record) external pure returns (bytes32) {
        return _hashRecord(record);
    }

    /// @notice The EIP-712 domain separator of this registry (chain id and address bound).
    /// @return The domain separator.
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    /// @notice Sets the base of `tokenURI` (a metadata service that serves devices by id).
    /// @param baseURI The new base, for example "https://devices.example.com/".
    function setBaseURI(string calldata baseURI) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _baseTokenURI = baseURI;
        emit BaseURIChanged(baseURI);
    }

    /// @inheritdoc ERC721
    function supportsInterface(bytes4 interfaceId) public view override(IERC165, ERC721, AccessControl) returns (bool) {
        return super.supportsInterface(interfaceId);
    }

    // ------------------------------------------------------------------ internals

    /// @dev Every ownership change (transfer, not mint) moves the device to a new epoch, which kills all grants.
    /// A decommissioned device never moves again.
    function _update(address to, uint256 tokenId, address auth) internal override returns (address from) {
        Device storage device = _devices[tokenId];
        if (device.state == DeviceState.Decommissioned) revert DeviceIsDecommissioned(tokenId);
        from = super._update(to, tokenId, auth);
        if (from != address(0)) device.epoch += 1;
    }

    function _baseURI() internal view override returns (string memory) {
        return _baseTokenURI;
    }

    /// @dev Lifecycle, grants and keys belong to the owner alone: an ERC-721 approval (a marketplace's
    /// operator rights, SalesOrder's escrow) moves the token but cannot decommission it or rotate its key.
    function _requireOwner(uint256 deviceId) private view returns (address owner) {
        owner = _ownerOf(deviceId);
        if (owner == address(0)) revert UnknownDevice(deviceId);
        if (owner != msg.sender) revert NotDeviceOwner(deviceId, msg.sender);
    }

    function _transition(uint256 deviceId, DeviceState from, DeviceState to) private {
        Device storage device = _devices[deviceId];
        if (device.state != from) revert InvalidStateTransition(deviceId, device.state);
        device.state = to;
    }

    function _isLive(uint256 deviceId, Grant memory grant) private view returns (bool) {
        return grant.permissions != 0 && grant.epoch == _devices[deviceId].epoch && block.timestamp <= grant.expiresAt;
    }

    /// @dev ECDSA.tryRecover refuses malleable (high-s) and malformed signatures by returning an error,
    /// which we map to address(0): never a device key.
    function _recover(bytes32 digest, bytes calldata signature) private pure returns (address) {
        // The third return value only details the error, which we do not report.
        // slither-disable-next-line unused-return
        (address signer, ECDSA.RecoverError error,) = ECDSA.tryRecover(digest, signature);
        return error == ECDSA.RecoverError.NoError ? signer : address(0);
    }

    function _hashRecord(ManufacturingRecord calldata record) private pure returns (bytes32) {
        return keccak256(
            abi.encode(
                RECORD_TYPEHASH,
                keccak256(bytes(record.model)),
                keccak256(bytes(record.serial)),
                record.firmwareHash,
                record.manufacturedAt,
                record.warrantyEnd,
                keccak256(bytes(record.metadataURI))
            )
        );
    }
}
