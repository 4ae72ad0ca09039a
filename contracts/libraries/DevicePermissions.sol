// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title DevicePermissions
/// @notice The permission bits of DeviceRegistry's admission control. Bits 0-15 are reserved for
/// thingledger, bits 16-63 are free for applications.
library DevicePermissions {
    /// @notice Send commands to the device's actuators.
    uint64 internal constant OPERATE = 1 << 0;
    /// @notice Read the device's telemetry.
    uint64 internal constant READ_DATA = 1 << 1;
    /// @notice Have goods released through the device (a warehouse gate releasing a seller's orders).
    uint64 internal constant RELEASE = 1 << 2;
    /// @notice Perform maintenance on the device.
    uint64 internal constant SERVICE = 1 << 3;
}
