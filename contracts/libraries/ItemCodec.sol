// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title ItemCodec
/// @notice Packs an item type (year, make, model) into one `bytes` value, so that a typical item type
/// (up to 28 bytes of make and model together) takes a single storage slot instead of three.
/// @dev Layout: `year (2 bytes) | len(make) (1 byte) | make | model`.
library ItemCodec {
    /// @notice The longest make or model accepted, in bytes.
    uint256 internal constant MAX_FIELD_LENGTH = 64;

    /// @notice A make or model is empty or longer than MAX_FIELD_LENGTH.
    error InvalidItemField();

    /// @notice Packs the fields; reverts with InvalidItemField when make or model is empty or too long.
    function encode(string calldata make, string calldata model, uint16 year) internal pure returns (bytes memory) {
        uint256 makeLength = bytes(make).length;
        uint256 modelLength = bytes(model).length;
        if (makeLength == 0 || modelLength == 0 || makeLength > MAX_FIELD_LENGTH || modelLength > MAX_FIELD_LENGTH) {
            revert InvalidItemField();
        }
        return abi.encodePacked(year, uint8(makeLength), make, model);
    }

    /// @notice Unpacks what `encode` packed.
    function decode(bytes memory packed) internal pure returns (string memory make, string memory model, uint16 year) {
        year = uint16(bytes2(bytes.concat(packed[0], packed[1])));
        uint256 makeLength = uint8(packed[2]);
        make = string(_slice(packed, 3, makeLength));
        model = string(_slice(packed, 3 + makeLength, packed.length - 3 - makeLength));
    }

    function _slice(bytes memory data, uint256 start, uint256 length) private pure returns (bytes memory out) {
        out = new bytes(length);
        for (uint256 i; i < length; ++i) {
            out[i] = data[start + i];
        }
    }
}
