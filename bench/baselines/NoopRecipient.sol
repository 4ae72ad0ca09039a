// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @notice Gas baseline for bench/gas_relay.py: a CrossChainRelay recipient (IRelayRecipient's
/// `receiveMessage`) that does nothing, so that a delivery's gas is the relay's own work plus the bare call
/// (Hyperlane's published figures exclude the recipient's work too). It checks neither the caller nor the
/// sender: never deploy it for real use.
contract NoopRecipient {
    function receiveMessage(bytes32, uint64, address, bytes calldata) external {}
}
