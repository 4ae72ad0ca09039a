// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {ICrossChainRelay} from "../../interfaces/ICrossChainRelay.sol";

/// @title RelayMessages
/// @notice EIP-712 hashing of CrossChainRelay messages: a message's id is its hash in its source relay's
/// domain; validators sign its hash in its destination relay's domain. Both domains are
/// `EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)` with name
/// "thingledger CrossChainRelay" and version "1".
library RelayMessages {
    /// @notice The EIP-712 type hash of `ICrossChainRelay.Message`.
    bytes32 internal constant MESSAGE_TYPEHASH = keccak256(
        "Message(uint8 version,uint64 nonce,uint64 srcChainId,address srcRelay,address sender,uint64 dstChainId,"
        "address dstRelay,address recipient,uint32 gasLimit,bytes payload)"
    );
    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    /// @notice The relays' EIP-712 domain name and version.
    string internal constant NAME = "thingledger CrossChainRelay";
    string internal constant VERSION = "1";

    /// @notice The EIP-712 struct hash of a message in calldata.
    function structHash(ICrossChainRelay.Message calldata m) internal pure returns (bytes32) {
        return _structHash(
            m.version, m.nonce, m.srcChainId, m.srcRelay, m.sender, m.dstChainId, m.dstRelay, m.recipient,
            m.gasLimit, keccak256(m.payload)
        );
    }

    /// @notice The EIP-712 struct hash of a message in memory.
    function structHashMemory(ICrossChainRelay.Message memory m) internal pure returns (bytes32) {
        return _structHash(
            m.version, m.nonce, m.srcChainId, m.srcRelay, m.sender, m.dstChainId, m.dstRelay, m.recipient,
            m.gasLimit, keccak256(m.payload)
        );
    }

    /// @notice The EIP-712 domain separator of the relay `relay` on chain `chainId`.
    function domainSeparator(uint256 chainId, address relay) internal pure returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, keccak256(bytes(NAME)), keccak256(bytes(VERSION)), chainId, relay));
    }

    /// @notice A message's id: its EIP-712 hash in the source relay's domain.
    /// @param srcChainId The message's source chain.
    /// @param srcRelay The message's source relay.
    /// @param messageStructHash The message's struct hash.
    function id(uint64 srcChainId, address srcRelay, bytes32 messageStructHash) internal pure returns (bytes32) {
        return MessageHashUtils.toTypedDataHash(domainSeparator(srcChainId, srcRelay), messageStructHash);
    }

    function _structHash(
        uint8 version,
        uint64 nonce,
        uint64 srcChainId,
        address srcRelay,
        address sender,
        uint64 dstChainId,
        address dstRelay,
        address recipient,
        uint32 gasLimit,
        bytes32 payloadHash
    ) private pure returns (bytes32) {
        return keccak256(
            abi.encode(
                MESSAGE_TYPEHASH, version, nonce, srcChainId, srcRelay, sender, dstChainId, dstRelay, recipient,
                gasLimit, payloadHash
            )
        );
    }
}
