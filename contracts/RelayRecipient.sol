// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IRelayRecipient} from "../interfaces/IRelayRecipient.sol";

/// @title RelayRecipient
/// @notice Base of contracts that CrossChainRelay calls: only the relay may call `receiveMessage`, and only
/// messages from a sender trusted for their source chain reach `_receiveMessage`.
/// @dev The inheriting contract decides who may trust senders and exposes `_setTrustedSender` accordingly.
abstract contract RelayRecipient is IRelayRecipient {
    /// @notice The relay allowed to call `receiveMessage`.
    address public immutable relay;

    mapping(uint64 srcChainId => mapping(address sender => bool)) private _trustedSenders;

    /// @notice `sender` on chain `srcChainId` is now trusted (`trusted`) or no longer.
    event TrustedSenderSet(uint64 indexed srcChainId, address indexed sender, bool trusted);

    /// @notice `receiveMessage` was called by someone other than the relay.
    error NotRelay(address caller);
    /// @notice The message's sender is not trusted for its source chain.
    error UntrustedSender(uint64 srcChainId, address sender);
    error ZeroRelay();

    /// @param relay_ The CrossChainRelay on this chain.
    constructor(address relay_) {
        if (relay_ == address(0)) revert ZeroRelay();
        relay = relay_;
    }

    /// @inheritdoc IRelayRecipient
    function receiveMessage(bytes32 id, uint64 srcChainId, address sender, bytes calldata payload) external {
        if (msg.sender != relay) revert NotRelay(msg.sender);
        if (!_trustedSenders[srcChainId][sender]) revert UntrustedSender(srcChainId, sender);
        _receiveMessage(id, srcChainId, sender, payload);
    }

    /// @notice Whether messages from `sender` on chain `srcChainId` are accepted.
    /// @param srcChainId The source chain.
    /// @param sender The sending contract there.
    /// @return Whether it is trusted.
    function isTrustedSender(uint64 srcChainId, address sender) public view returns (bool) {
        return _trustedSenders[srcChainId][sender];
    }

    /// @dev Trusts (or stops trusting) `sender` on chain `srcChainId`.
    function _setTrustedSender(uint64 srcChainId, address sender, bool trusted) internal {
        _trustedSenders[srcChainId][sender] = trusted;
        emit TrustedSenderSet(srcChainId, sender, trusted);
    }

    /// @dev Handles a message from a trusted sender, called by the relay.
    function _receiveMessage(bytes32 id, uint64 srcChainId, address sender, bytes calldata payload) internal virtual;
}
