// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ICrossChainRelay} from "../interfaces/ICrossChainRelay.sol";
import {IRelayRecipient} from "../interfaces/IRelayRecipient.sol";
import {RelayMessages} from "./libraries/RelayMessages.sol";

/// @title CrossChainRelay
/// @notice Sends messages to other chains and delivers theirs, exactly once, when a quorum of validators
/// signed them. See ICrossChainRelay for the flow, the status of a message and the signature format.
/// @dev Delivery reads the slot holding the pause flag, epoch and threshold, the source chain's bucket (which
/// shares its slot with the trusted relay, and is rewritten), its rate limit, the message's status (then
/// written: the one new slot), and one slot per signer. Nothing loops over more than `MAX_VALIDATORS` entries.
contract CrossChainRelay is ICrossChainRelay, EIP712, Ownable2Step, Pausable {
    /// @notice The message format this relay sends and accepts.
    uint8 public constant VERSION = 1;
    /// @notice The largest validator set.
    uint256 public constant MAX_VALIDATORS = 32;
    /// @notice The largest gas limit a message may ask for.
    uint256 public constant MAX_GAS_LIMIT = 5_000_000;
    /// @notice The largest payload a message may carry.
    uint256 public constant MAX_PAYLOAD_BYTES = 8_192;
    /// @notice How much of a failing recipient's revert data is kept (in `MessageFailed` and `RetryFailed`).
    uint256 public constant MAX_RETURN_BYTES = 256;
    /// @notice Gas that must be left, beyond the recipient's gas limit and the 1/64 the EVM keeps back, when
    /// the recipient is called: enough to record a failure afterwards.
    uint256 public constant CALL_RESERVE = 15_000;

    /// @dev A rate-limit token, in the bucket's units (1/3600 of a message).
    uint256 private constant TOKEN = 3_600;

    /// @dev A remote chain's trusted relay and its bucket, in one slot (read and rewritten once per delivery).
    struct Bucket {
        address relay;
        uint40 refilledAt;
        uint56 level;
    }

    /// @dev A remote chain's rate limit.
    struct Limit {
        uint32 capacity;
        uint32 refillPerHour;
    }

    // Shares a slot with Ownable2Step's pending owner and Pausable's flag (read together by `deliver`).
    uint64 private _epoch;
    uint8 private _threshold;

    uint64 private _nextNonce;
    address private _guardian;
    address[] private _validators;
    mapping(address validator => uint64 epoch) private _validatorEpoch;
    mapping(uint64 chainId => Bucket) private _buckets;
    mapping(uint64 chainId => Limit) private _limits;
    mapping(bytes32 id => MessageStatus) private _status;
    mapping(address sender => bool) private _allowedSenders;

    /// @param initialOwner Sets validators, remotes and the guardian, and unpauses.
    /// @param initialGuardian May pause (zero for none).
    /// @param validators The first validator set (epoch 1).
    /// @param threshold The signatures a delivery needs; a majority of `validators`.
    constructor(address initialOwner, address initialGuardian, address[] memory validators, uint8 threshold)
        EIP712(RelayMessages.NAME, RelayMessages.VERSION)
        Ownable(initialOwner)
    {
        _setGuardian(initialGuardian);
        _setValidators(validators, threshold);
    }

    // ------------------------------------------------------------------ messages

    /// @inheritdoc ICrossChainRelay
    function send(uint64 dstChainId, address recipient, uint32 gasLimit, bytes calldata payload)
        external
        whenNotPaused
        returns (bytes32 id)
    {
        if (!_allowedSenders[msg.sender]) revert SenderNotAllowed(msg.sender);
        address dstRelay = _buckets[dstChainId].relay;
        if (dstRelay == address(0)) revert UnknownDestination(dstChainId);
        if (recipient == address(0)) revert ZeroAddress();
        if (gasLimit > MAX_GAS_LIMIT) revert GasLimitTooHigh(gasLimit, MAX_GAS_LIMIT);
        if (payload.length > MAX_PAYLOAD_BYTES) revert PayloadTooLarge(payload.length, MAX_PAYLOAD_BYTES);

        Message memory message = Message({
            version: VERSION,
            nonce: _nextNonce++,
            srcChainId: uint64(block.chainid),
            srcRelay: address(this),
            sender: msg.sender,
            dstChainId: dstChainId,
            dstRelay: dstRelay,
            recipient: recipient,
            gasLimit: gasLimit,
            payload: payload
        });
        id = _hashTypedDataV4(RelayMessages.structHashMemory(message));
        emit MessageSent(id, dstChainId, msg.sender, message);
    }

    /// @inheritdoc ICrossChainRelay
    function deliver(Message calldata message, bytes calldata signatures)
        external
        whenNotPaused
        returns (bytes32 id, bool success)
    {
        if (message.version != VERSION) revert UnsupportedVersion(message.version);
        if (message.dstChainId != block.chainid || message.dstRelay != address(this)) {
            revert WrongDestination(message.dstChainId, message.dstRelay);
        }
        uint64 srcChainId = message.srcChainId;
        Bucket memory bucket = _buckets[srcChainId];
        if (bucket.relay == address(0) || bucket.relay != message.srcRelay) {
            revert UntrustedSource(srcChainId, message.srcRelay);
        }
        bytes32 structHash = RelayMessages.structHash(message);
        id = RelayMessages.id(srcChainId, message.srcRelay, structHash);
        MessageStatus status = _status[id];
        if (status != MessageStatus.None) revert AlreadyProcessed(id, status);
        _checkSignatures(_hashTypedDataV4(structHash), signatures);
        _takeToken(srcChainId, bucket);

        _status[id] = MessageStatus.Delivered;
        bytes memory reason;
        (success, reason) = _callRecipient(id, message, message.gasLimit);
        if (success) {
            emit MessageDelivered(id, srcChainId, message.recipient);
        } else {
            // Written after the call on purpose: the message is Delivered while the recipient runs, so a
            // re-entrant `deliver` or `retry` of it is refused.
            _status[id] = MessageStatus.Failed;
            emit MessageFailed(id, srcChainId, message.recipient, reason);
        }
    }

    /// @inheritdoc ICrossChainRelay
    function retry(Message calldata message, uint32 gasLimit) external whenNotPaused returns (bytes32 id) {
        if (gasLimit < message.gasLimit) revert RetryGasBelowMessage(gasLimit, message.gasLimit);
        if (gasLimit > MAX_GAS_LIMIT) revert GasLimitTooHigh(gasLimit, MAX_GAS_LIMIT);
        uint64 srcChainId = message.srcChainId;
        address trusted = _buckets[srcChainId].relay;
        if (trusted == address(0) || trusted != message.srcRelay) revert UntrustedSource(srcChainId, message.srcRelay);
        id = RelayMessages.id(srcChainId, message.srcRelay, RelayMessages.structHash(message));
        MessageStatus status = _status[id];
        if (status != MessageStatus.Failed) revert NotFailed(id, status);

        _status[id] = MessageStatus.Delivered;
        (bool success, bytes memory reason) = _callRecipient(id, message, gasLimit);
        if (!success) revert RetryFailed(id, reason);
        emit MessageDelivered(id, srcChainId, message.recipient);
    }

    // ------------------------------------------------------------------ administration

    /// @inheritdoc ICrossChainRelay
    function setValidators(address[] calldata validators, uint8 threshold) external onlyOwner {
        _setValidators(validators, threshold);
    }

    /// @inheritdoc ICrossChainRelay
    function setRemote(uint64 chainId, address relay, uint32 capacity, uint32 refillPerHour) external onlyOwner {
        if (relay == address(0)) revert ZeroAddress();
        if (capacity == 0 || refillPerHour == 0) revert InvalidRateLimit(capacity, refillPerHour);
        Bucket memory bucket = _buckets[chainId];
        uint256 full = uint256(capacity) * TOKEN;
        uint256 level = bucket.relay == relay ? _levelNow(bucket, _limits[chainId]) : full;
        if (level > full) level = full;
        _buckets[chainId] = Bucket(relay, uint40(block.timestamp), uint56(level));
        _limits[chainId] = Limit(capacity, refillPerHour);
        emit RemoteSet(chainId, relay, capacity, refillPerHour);
    }

    /// @inheritdoc ICrossChainRelay
    function removeRemote(uint64 chainId) external onlyOwner {
        if (_buckets[chainId].relay == address(0)) revert UnknownDestination(chainId);
        delete _buckets[chainId];
        delete _limits[chainId];
        emit RemoteRemoved(chainId);
    }

    /// @inheritdoc ICrossChainRelay
    function setSenderAllowed(address sender, bool allowed) external onlyOwner {
        if (sender == address(0)) revert ZeroAddress();
        _allowedSenders[sender] = allowed;
        emit SenderAllowed(sender, allowed);
    }

    /// @notice Disabled: without an owner the relay could stay paused for good and its validators could never
    /// be rotated. Transfer ownership instead.
    function renounceOwnership() public view override onlyOwner {
        revert RenounceDisabled();
    }

    /// @inheritdoc ICrossChainRelay
    function setGuardian(address newGuardian) external onlyOwner {
        _setGuardian(newGuardian);
    }

    /// @inheritdoc ICrossChainRelay
    function pause() external {
        if (msg.sender != _guardian && msg.sender != owner()) revert NotGuardian(msg.sender);
        _pause();
    }

    /// @inheritdoc ICrossChainRelay
    function unpause() external onlyOwner {
        _unpause();
    }

    // ------------------------------------------------------------------ views

    /// @inheritdoc ICrossChainRelay
    function messageStatus(bytes32 id) external view returns (MessageStatus) {
        return _status[id];
    }

    /// @inheritdoc ICrossChainRelay
    function messageId(Message calldata message) external pure returns (bytes32) {
        return RelayMessages.id(message.srcChainId, message.srcRelay, RelayMessages.structHash(message));
    }

    /// @inheritdoc ICrossChainRelay
    function deliveryDigest(Message calldata message) external view returns (bytes32) {
        return _hashTypedDataV4(RelayMessages.structHash(message));
    }

    /// @inheritdoc ICrossChainRelay
    function validatorSet() external view returns (address[] memory validators, uint8 threshold, uint64 epoch) {
        return (_validators, _threshold, _epoch);
    }

    /// @inheritdoc ICrossChainRelay
    function isValidator(address account) external view returns (bool) {
        return account != address(0) && _validatorEpoch[account] == _epoch;
    }

    /// @inheritdoc ICrossChainRelay
    function remote(uint64 chainId) external view returns (Remote memory) {
        Limit memory limit = _limits[chainId];
        return Remote(_buckets[chainId].relay, limit.capacity, limit.refillPerHour);
    }

    /// @inheritdoc ICrossChainRelay
    function rateLimitTokens(uint64 chainId) external view returns (uint256 available, uint256 nextTokenIn) {
        Bucket memory bucket = _buckets[chainId];
        if (bucket.relay == address(0)) return (0, 0);
        Limit memory limit = _limits[chainId];
        uint256 level = _levelNow(bucket, limit);
        available = level / TOKEN;
        if (available < limit.capacity) nextTokenIn = _secondsToRefill((available + 1) * TOKEN - level, limit.refillPerHour);
    }

    /// @inheritdoc ICrossChainRelay
    function isSenderAllowed(address sender) external view returns (bool) {
        return _allowedSenders[sender];
    }

    /// @inheritdoc ICrossChainRelay
    function nextNonce() external view returns (uint64) {
        return _nextNonce;
    }

    /// @inheritdoc ICrossChainRelay
    function guardian() external view returns (address) {
        return _guardian;
    }

    // ------------------------------------------------------------------ internals

    /// @dev Requires at least `threshold` signatures of `digest`, each a current validator's, signers strictly
    /// ascending. The loop is bounded by `MAX_VALIDATORS`.
    function _checkSignatures(bytes32 digest, bytes calldata signatures) private view {
        uint256 length = signatures.length;
        if (length % 65 != 0 || length > 65 * MAX_VALIDATORS) revert MalformedSignatures(length);
        uint256 count = length / 65;
        uint256 threshold = _threshold;
        if (count < threshold) revert TooFewSignatures(count, threshold);
        uint64 epoch = _epoch;
        address previous;
        for (uint256 i; i < count; ++i) {
            bytes32 r;
            bytes32 s;
            uint8 v;
            assembly ("memory-safe") {
                let p := add(signatures.offset, mul(i, 65))
                r := calldataload(p)
                s := calldataload(add(p, 32))
                v := byte(0, calldataload(add(p, 64)))
            }
            // The third value only details the error; any error refuses the signature.
            // slither-disable-next-line unused-return
            (address signer, ECDSA.RecoverError error,) = ECDSA.tryRecover(digest, v, r, s);
            if (error != ECDSA.RecoverError.NoError) revert InvalidSignature(i);
            if (signer <= previous) revert SignersNotAscending(i);
            if (_validatorEpoch[signer] != epoch) revert NotValidator(i, signer);
            previous = signer;
        }
    }

    /// @dev Takes one token from chain `chainId`'s bucket (read by the caller as `bucket`).
    function _takeToken(uint64 chainId, Bucket memory bucket) private {
        Limit memory limit = _limits[chainId];
        uint256 level = _levelNow(bucket, limit);
        if (level < TOKEN) revert RateLimited(chainId, _secondsToRefill(TOKEN - level, limit.refillPerHour));
        _buckets[chainId] = Bucket(bucket.relay, uint40(block.timestamp), uint56(level - TOKEN));
    }

    /// @dev The bucket's level now: refilled since it was last written, capped at its capacity.
    function _levelNow(Bucket memory bucket, Limit memory limit) private view returns (uint256 level) {
        level = bucket.level + (block.timestamp - bucket.refilledAt) * limit.refillPerHour;
        uint256 full = uint256(limit.capacity) * TOKEN;
        if (level > full) level = full;
    }

    function _secondsToRefill(uint256 units, uint256 refillPerHour) private pure returns (uint256) {
        return (units + refillPerHour - 1) / refillPerHour;
    }

    /// @dev Calls the recipient with exactly `gasLimit` gas and returns whether it succeeded and at most
    /// `MAX_RETURN_BYTES` of its revert data. A recipient without code fails without a call.
    function _callRecipient(bytes32 id, Message calldata message, uint256 gasLimit)
        private
        returns (bool success, bytes memory reason)
    {
        address recipient = message.recipient;
        if (recipient.code.length == 0) {
            return (false, abi.encodeWithSelector(RecipientNotContract.selector, recipient));
        }
        bytes memory data =
            abi.encodeCall(IRelayRecipient.receiveMessage, (id, message.srcChainId, message.sender, message.payload));
        uint256 required = gasLimit + gasLimit / 63 + CALL_RESERVE;
        if (gasleft() < required) revert InsufficientGas(gasleft(), required);
        assembly ("memory-safe") {
            success := call(gasLimit, recipient, 0, add(data, 32), mload(data), 0, 0)
        }
        if (!success) {
            assembly ("memory-safe") {
                let size := returndatasize()
                if gt(size, MAX_RETURN_BYTES) { size := MAX_RETURN_BYTES }
                reason := mload(0x40)
                mstore(reason, size)
                returndatacopy(add(reason, 32), 0, size)
                mstore(0x40, and(add(add(reason, 63), size), not(31)))
            }
        }
    }

    function _setValidators(address[] memory validators, uint8 threshold) private {
        uint256 count = validators.length;
        if (count == 0 || count > MAX_VALIDATORS || threshold > count || uint256(threshold) * 2 <= count) {
            revert InvalidValidatorSet(count, threshold);
        }
        uint64 epoch = _epoch + 1;
        for (uint256 i; i < count; ++i) {
            address validator = validators[i];
            if (validator == address(0)) revert ZeroAddress();
            if (_validatorEpoch[validator] == epoch) revert DuplicateValidator(validator);
            _validatorEpoch[validator] = epoch;
        }
        _validators = validators;
        _epoch = epoch;
        _threshold = threshold;
        emit ValidatorSetChanged(epoch, validators, threshold);
    }

    function _setGuardian(address newGuardian) private {
        emit GuardianChanged(_guardian, newGuardian);
        _guardian = newGuardian;
    }
}
