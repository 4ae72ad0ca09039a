// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {IPullPayments} from "../interfaces/IPullPayments.sol";

/// @title PullPayments
/// @notice The credits of a contract that holds other people's money, and the one way they leave: the
/// account's own `withdraw`, after every state change, behind a reentrancy guard.
abstract contract PullPayments is IPullPayments, ReentrancyGuard {
    mapping(address account => uint256 amount) private _credits;

    /// @inheritdoc IPullPayments
    function withdraw() external nonReentrant {
        uint256 amount = _credits[msg.sender];
        if (amount == 0) revert NothingToWithdraw(msg.sender);
        _credits[msg.sender] = 0;
        emit Withdrawn(msg.sender, amount);
        // Money only ever leaves to the caller, after every state change.
        Address.sendValue(payable(msg.sender), amount);
    }

    /// @inheritdoc IPullPayments
    function creditOf(address account) external view returns (uint256) {
        return _credits[account];
    }

    /// @dev Adds `amount` to what `account` may withdraw.
    function _credit(address account, uint256 amount) internal {
        _credits[account] += amount;
    }
}
