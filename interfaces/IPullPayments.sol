// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IPullPayments
/// @notice Money a contract owes is credited to the account, and the account takes it out itself.
interface IPullPayments {
    /// @notice `account` withdrew its credit.
    event Withdrawn(address indexed account, uint256 amount);

    error NothingToWithdraw(address account);

    /// @notice Pays the caller's whole credit to the caller.
    function withdraw() external;

    /// @notice The credit `account` may withdraw.
    /// @param account The account.
    /// @return The amount in wei.
    function creditOf(address account) external view returns (uint256);
}
