// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IRelayRecipient
/// @notice What a CrossChainRelay calls on the destination chain. An implementation must check that the
/// caller is its relay and that `sender` on `srcChainId` is a sender it trusts; `RelayRecipient` does both.
interface IRelayRecipient {
    /// @notice Handles a delivered message. Reverting leaves the message Failed on the relay (retryable).
    /// @param id The message id.
    /// @param srcChainId The chain the message was sent from.
    /// @param sender The contract that sent it there.
    /// @param payload The message's payload.
    function receiveMessage(bytes32 id, uint64 srcChainId, address sender, bytes calldata payload) external;
}
