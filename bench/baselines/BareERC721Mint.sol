// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";

/// @notice Gas baseline: the cheapest useful device token, a bare OpenZeppelin ERC-721 mint.
contract BareERC721Mint is ERC721 {
    constructor() ERC721("Bare", "BARE") {}

    function mint(address to, uint256 tokenId) external {
        _mint(to, tokenId);
    }
}
