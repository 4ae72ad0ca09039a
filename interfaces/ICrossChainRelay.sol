// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title ICrossChainRelay
/// @notice A contract call on one chain triggers a contract on another, exactly once, when a quorum of
/// validators has signed the message.
///
/// Flow:
///   1. On the source chain a contract (the sender) calls `send`. The relay gives the message the next nonce
///      of this relay and emits it whole in `MessageSent`. Its id is the EIP-712 hash of the message in the
///      source relay's domain; it holds no block data, so a message re-mined after a reorg keeps its id.
///   2. Validators (off chain) check the log once it is deep enough and sign the same message in the
///      destination relay's EIP-712 domain.
///   3. Anyone (the relayer) calls `deliver` on the destination with the message and at least `threshold`
///      signatures. The relay checks them, takes a token from the source chain's rate limit, marks the message
///      Delivered and calls `recipient.receiveMessage(id, srcChainId, sender, payload)` with exactly the
///      message's gas limit.
///   4. If the recipient reverts (or has no code) the message is Failed; other messages are not held up.
///      Anyone may `retry` a Failed message; it becomes Delivered once the recipient's call succeeds.
///
/// Message status per id:
///
///     deliver() ──> Delivered
///         │
///         └─(recipient reverts)──> Failed ──retry() succeeds──> Delivered
///
/// `MessageDelivered` is emitted exactly once per id: when the recipient's call succeeds.
///
/// Signatures: `signatures` is the concatenation of 65-byte `r ‖ s ‖ v` ECDSA signatures of the message's
/// EIP-712 digest in this relay's domain ("thingledger CrossChainRelay", version "1"), ordered by strictly
/// ascending signer address, every signer a validator of the current epoch. High-s and malformed signatures
/// are refused.
interface ICrossChainRelay {
    /// @notice Where a message is on its destination. `None`: never delivered here.
    enum MessageStatus {
        None,
        Delivered,
        Failed
    }

    /// @notice A cross-chain message, as emitted on the source and delivered on the destination.
    /// EIP-712 type: `Message(uint8 version,uint64 nonce,uint64 srcChainId,address srcRelay,address sender,
    /// uint64 dstChainId,address dstRelay,address recipient,uint32 gasLimit,bytes payload)`; as EIP-712 does
    /// for `bytes`, the payload enters the hash as its keccak256.
    struct Message {
        uint8 version;
        uint64 nonce;
        uint64 srcChainId;
        address srcRelay;
        address sender;
        uint64 dstChainId;
        address dstRelay;
        address recipient;
        uint32 gasLimit;
        bytes payload;
    }

    /// @notice A remote chain: the relay trusted there (source of messages to this chain, destination of
    /// messages from it) and the token bucket that limits how many of its messages this relay delivers.
    /// @dev `level` counts tokens in 1/3600ths, so `refillPerHour` adds exactly `refillPerHour` per hour
    /// with no rounding loss.
    struct Remote {
        address relay;
        uint32 capacity;
        uint32 refillPerHour;
    }

    /// @notice `sender` sent a message to `message.recipient` on chain `dstChainId`.
    event MessageSent(bytes32 indexed id, uint64 indexed dstChainId, address indexed sender, Message message);
    /// @notice The recipient's call for message `id` succeeded (on `deliver` or on `retry`); once per id.
    event MessageDelivered(bytes32 indexed id, uint64 indexed srcChainId, address indexed recipient);
    /// @notice The recipient's call for message `id` reverted or the recipient has no code; `reason` holds
    /// at most `MAX_RETURN_BYTES` bytes of its revert data.
    event MessageFailed(bytes32 indexed id, uint64 indexed srcChainId, address indexed recipient, bytes reason);
    /// @notice The owner replaced the validator set; signatures are checked against it from now on.
    event ValidatorSetChanged(uint64 indexed epoch, address[] validators, uint8 threshold);
    /// @notice The owner set the trusted relay and rate limit of chain `chainId`.
    event RemoteSet(uint64 indexed chainId, address indexed relay, uint32 capacity, uint32 refillPerHour);
    /// @notice The owner removed chain `chainId`: its messages are no longer delivered and none are sent to it.
    event RemoteRemoved(uint64 indexed chainId);
    /// @notice The owner allowed `sender` to send messages through this relay, or stopped allowing it.
    event SenderAllowed(address indexed sender, bool allowed);
    /// @notice The owner appointed a new guardian.
    event GuardianChanged(address indexed previousGuardian, address indexed newGuardian);

    error ZeroAddress();
    /// @notice The caller is neither the guardian nor the owner.
    error NotGuardian(address caller);
    /// @notice Only senders the owner allowed may send: every message from a chain spends the same rate limit.
    error SenderNotAllowed(address sender);
    /// @notice The relay cannot be left without an owner (it could stay paused for good).
    error RenounceDisabled();
    /// @notice No trusted relay is set for chain `dstChainId`.
    error UnknownDestination(uint64 dstChainId);
    error PayloadTooLarge(uint256 size, uint256 maxSize);
    error GasLimitTooHigh(uint256 gasLimit, uint256 maxGasLimit);
    error UnsupportedVersion(uint8 version);
    /// @notice The message is for another chain or another relay.
    error WrongDestination(uint64 dstChainId, address dstRelay);
    /// @notice The message's source relay is not the relay trusted for its source chain.
    error UntrustedSource(uint64 srcChainId, address srcRelay);
    /// @notice The message was already delivered here (its status is `status`).
    error AlreadyProcessed(bytes32 id, MessageStatus status);
    /// @notice `retry` needs a Failed message.
    error NotFailed(bytes32 id, MessageStatus status);
    /// @notice `signatures` is not a whole number of 65-byte signatures, or holds more than `MAX_VALIDATORS`.
    error MalformedSignatures(uint256 length);
    error TooFewSignatures(uint256 count, uint256 threshold);
    /// @notice Signature number `index` is malformed or malleable (high s).
    error InvalidSignature(uint256 index);
    /// @notice Signature number `index` is by `signer`, who is not a validator of the current epoch.
    error NotValidator(uint256 index, address signer);
    /// @notice Signature number `index` is not by a signer above the previous one.
    error SignersNotAscending(uint256 index);
    /// @notice Chain `srcChainId`'s bucket is empty; a token is back in `retryAfter` seconds.
    error RateLimited(uint64 srcChainId, uint256 retryAfter);
    /// @notice Less gas is left than the recipient's gas limit needs (the relayer must not starve it).
    error InsufficientGas(uint256 available, uint256 required);
    /// @notice The recipient has no code (recorded as a Failed message's reason, never reverted with).
    error RecipientNotContract(address recipient);
    /// @notice The recipient reverted on `retry`; the message stays Failed.
    error RetryFailed(bytes32 id, bytes reason);
    /// @notice A retry's gas limit must be at least the message's own.
    error RetryGasBelowMessage(uint256 gasLimit, uint256 messageGasLimit);
    /// @notice A validator set must have 1 to `MAX_VALIDATORS` members and a threshold that is a majority.
    error InvalidValidatorSet(uint256 count, uint8 threshold);
    error DuplicateValidator(address validator);
    /// @notice A rate limit needs a capacity and a refill of at least one message.
    error InvalidRateLimit(uint32 capacity, uint32 refillPerHour);

    /// @notice Sends `payload` to `recipient` on chain `dstChainId`, to be called with `gasLimit` gas.
    /// @dev The sender is `msg.sender`, which the owner must have allowed (`setSenderAllowed`): all messages
    /// from this chain share one rate limit on the destination, so an open `send` would let anyone use it up.
    /// The recipient sees the sender and must check it. Refused while paused.
    /// @param dstChainId The destination chain; its relay must be set (`setRemote`).
    /// @param recipient The contract called on the destination (an `IRelayRecipient`).
    /// @param gasLimit The gas the recipient's call gets, at most `MAX_GAS_LIMIT`.
    /// @param payload The bytes handed to the recipient, at most `MAX_PAYLOAD_BYTES`.
    /// @return id The message id (see `messageId`).
    function send(uint64 dstChainId, address recipient, uint32 gasLimit, bytes calldata payload)
        external
        returns (bytes32 id);

    /// @notice Delivers `message` if a quorum of validators signed it: marks it Delivered, then calls its
    /// recipient with exactly its gas limit. A recipient that reverts leaves the message Failed (the call does
    /// not revert). Anyone may call.
    /// @dev Reverts when paused, on a wrong destination, an untrusted source relay, an already processed
    /// message, bad signatures (see the contract's notice), an empty rate-limit bucket, or less gas left than
    /// the gas limit needs.
    /// @param message The message as emitted by `MessageSent` on the source.
    /// @param signatures Concatenated 65-byte signatures, signers strictly ascending.
    /// @return id The message id.
    /// @return success Whether the recipient's call succeeded.
    function deliver(Message calldata message, bytes calldata signatures) external returns (bytes32 id, bool success);

    /// @notice Calls a Failed message's recipient again; the message becomes Delivered if the call succeeds,
    /// otherwise the transaction reverts with `RetryFailed` and the message stays Failed. Anyone may call.
    /// @dev The message's source relay must still be the one trusted for its chain: when the owner removes or
    /// replaces a remote (for example after a validator compromise), its Failed messages can no longer run;
    /// trusting the relay again makes them retryable.
    /// @param message The message (its id must be Failed here).
    /// @param gasLimit The gas the recipient's call gets, at least the message's own gas limit and at most
    /// `MAX_GAS_LIMIT`.
    /// @return id The message id.
    function retry(Message calldata message, uint32 gasLimit) external returns (bytes32 id);

    /// @notice Replaces the validator set and threshold and starts a new epoch. Owner only.
    /// @param validators 1 to `MAX_VALIDATORS` distinct non-zero addresses.
    /// @param threshold Signatures needed; more than half of the validators and at most all of them.
    function setValidators(address[] calldata validators, uint8 threshold) external;

    /// @notice Trusts `relay` as chain `chainId`'s relay and sets the rate limit of its messages. Owner only.
    /// @dev Setting a new relay fills the bucket; changing only the limit keeps the tokens (capped).
    /// @param chainId The remote chain.
    /// @param relay The relay on that chain.
    /// @param capacity The most messages delivered in a burst.
    /// @param refillPerHour Messages added back to the bucket per hour.
    function setRemote(uint64 chainId, address relay, uint32 capacity, uint32 refillPerHour) external;

    /// @notice Stops trusting chain `chainId`: none of its messages are delivered and none are sent to it.
    /// Owner only.
    /// @param chainId The remote chain.
    function removeRemote(uint64 chainId) external;

    /// @notice Allows `sender` (a contract of an application using this relay) to send messages, or stops
    /// allowing it. Owner only.
    /// @param sender The sender.
    /// @param allowed Whether it may send.
    function setSenderAllowed(address sender, bool allowed) external;

    /// @notice Whether `sender` may send messages.
    /// @param sender The address.
    /// @return Whether it may.
    function isSenderAllowed(address sender) external view returns (bool);

    /// @notice Appoints the guardian, who may pause but not unpause. Owner only.
    /// @param guardian The new guardian (zero for none).
    function setGuardian(address guardian) external;

    /// @notice Stops `send`, `deliver` and `retry`. Guardian or owner.
    function pause() external;

    /// @notice Lets `send`, `deliver` and `retry` run again. Owner only.
    function unpause() external;

    /// @notice The status of message `id` on this chain.
    /// @param id The message id.
    /// @return The status.
    function messageStatus(bytes32 id) external view returns (MessageStatus);

    /// @notice The id of `message`: its EIP-712 hash in its source relay's domain.
    /// @param message The message.
    /// @return The id.
    function messageId(Message calldata message) external pure returns (bytes32);

    /// @notice What validators sign for `message` delivered here: its EIP-712 hash in this relay's domain.
    /// @param message The message (its destination should be this relay).
    /// @return The digest.
    function deliveryDigest(Message calldata message) external view returns (bytes32);

    /// @notice The current validators (in the order they were set), the threshold and the epoch.
    /// @return validators The validator set.
    /// @return threshold The signatures needed.
    /// @return epoch The number of the current set, starting at 1.
    function validatorSet() external view returns (address[] memory validators, uint8 threshold, uint64 epoch);

    /// @notice Whether `account` is a validator of the current epoch.
    /// @param account The address.
    /// @return Whether it is.
    function isValidator(address account) external view returns (bool);

    /// @notice Chain `chainId`'s trusted relay and rate limit (relay zero: not trusted).
    /// @param chainId The remote chain.
    /// @return The remote.
    function remote(uint64 chainId) external view returns (Remote memory);

    /// @notice How many messages from chain `chainId` could be delivered now, and seconds until the next token.
    /// @param chainId The remote chain.
    /// @return available Whole tokens in the bucket now.
    /// @return nextTokenIn Seconds until one more token (0 when the bucket is full).
    function rateLimitTokens(uint64 chainId) external view returns (uint256 available, uint256 nextTokenIn);

    /// @notice The nonce the next sent message gets.
    /// @return The nonce.
    function nextNonce() external view returns (uint64);

    /// @notice Who may pause.
    /// @return The guardian.
    function guardian() external view returns (address);
}
