// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

/// @title ReentrantActor
/// @notice TEST ONLY. A contract account that acts as a SalesOrder buyer or seller and, when it receives
/// ether, either refuses it or re-enters a configured call (for example `refund`, `buy` or `withdraw`).
/// The re-entrant call's outcome is recorded instead of bubbling up, so a test can check both that the
/// outer call went through and what the re-entrant call ran into. As a smart wallet it answers ERC-1271
/// for signatures by its configured `signer` key.
contract ReentrantActor {
    /// @notice The key whose signatures this account accepts as its own (ERC-1271); none while zero.
    address public signer;

    /// @notice When true, `receive` reverts without data (a payee that cannot be paid).
    bool public rejectPayments;
    /// @notice Where and what `receive` re-enters; no re-entry when `reentryTarget` is zero.
    address public reentryTarget;
    bytes public reentryData;
    uint256 public reentryValue;

    /// @notice How many times `receive` ran, and the outcome of the last re-entrant call.
    uint256 public receiveCount;
    bool public reentryAttempted;
    bool public reentrySucceeded;
    bytes public reentryReturnData;

    /// @notice Performs a call as this contract (list, buy, refund, withdraw, approve, ...); bubbles reverts.
    function execute(address target, bytes calldata data, uint256 value) external payable returns (bytes memory) {
        (bool ok, bytes memory ret) = target.call{value: value}(data);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(ret, 0x20), mload(ret))
            }
        }
        return ret;
    }

    function setSigner(address signer_) external {
        signer = signer_;
    }

    /// @notice ERC-1271: the magic value 0x1626ba7e when `signer` signed `digest`, else 0xffffffff.
    function isValidSignature(bytes32 digest, bytes calldata signature) external view returns (bytes4) {
        (address recovered, ECDSA.RecoverError error,) = ECDSA.tryRecover(digest, signature);
        bool valid = signer != address(0) && error == ECDSA.RecoverError.NoError && recovered == signer;
        return valid ? bytes4(0x1626ba7e) : bytes4(0xffffffff);
    }

    function setRejectPayments(bool reject) external {
        rejectPayments = reject;
    }

    function setReentry(address target, bytes calldata data, uint256 value) external {
        reentryTarget = target;
        reentryData = data;
        reentryValue = value;
    }

    receive() external payable {
        if (rejectPayments) revert();
        receiveCount += 1;
        if (reentryTarget != address(0) && !reentryAttempted) {
            reentryAttempted = true;
            (bool ok, bytes memory ret) = reentryTarget.call{value: reentryValue}(reentryData);
            reentrySucceeded = ok;
            reentryReturnData = ret;
        }
    }
}
