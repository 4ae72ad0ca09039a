// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {RelayRecipient} from "../RelayRecipient.sol";

/// @notice Test recipient of CrossChainRelay messages, with a selectable behaviour. Not for deployment.
contract RelayRecipientMock is RelayRecipient {
    enum Mode {
        Accept, // record the message
        Revert, // revert with Refused(payload)
        RevertBomb, // revert with 100,000 bytes of data
        ReturnBomb, // record, then return 100,000 bytes
        BurnGas, // spin until out of gas
        Reenter // record, then call the relay with `reentryCalldata` and record the outcome
    }

    uint256 internal constant BOMB_BYTES = 100_000;

    Mode public mode;
    uint256 public received;
    mapping(bytes32 id => uint256) public timesReceived;
    bytes32 public lastId;
    uint64 public lastSrcChainId;
    address public lastSender;
    bytes public lastPayload;
    /// @notice gasleft() when `_receiveMessage` started, for checks that the gas limit was honoured.
    uint256 public lastGasLeft;
    bytes public reentryCalldata;
    bool public reentrySucceeded;
    bytes public reentryResult;

    error Refused(bytes payload);

    constructor(address relay_) RelayRecipient(relay_) {}

    function setTrusted(uint64 srcChainId, address sender, bool trusted) external {
        _setTrustedSender(srcChainId, sender, trusted);
    }

    function setMode(Mode newMode) external {
        mode = newMode;
    }

    function setReentry(bytes calldata data) external {
        reentryCalldata = data;
    }

    function _receiveMessage(bytes32 id, uint64 srcChainId, address sender, bytes calldata payload)
        internal
        override
    {
        uint256 gasAtStart = gasleft();
        Mode current = mode;
        if (current == Mode.Revert) revert Refused(payload);
        if (current == Mode.RevertBomb) {
            assembly ("memory-safe") {
                revert(0, BOMB_BYTES)
            }
        }
        if (current == Mode.BurnGas) {
            while (true) {}
        }
        lastGasLeft = gasAtStart;
        received += 1;
        timesReceived[id] += 1;
        lastId = id;
        lastSrcChainId = srcChainId;
        lastSender = sender;
        lastPayload = payload;
        if (current == Mode.Reenter) {
            (bool success, bytes memory result) = relay.call(reentryCalldata);
            reentrySucceeded = success;
            reentryResult = result;
        }
        if (current == Mode.ReturnBomb) {
            assembly ("memory-safe") {
                return(0, BOMB_BYTES)
            }
        }
    }
}
