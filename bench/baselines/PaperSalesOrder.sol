// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @notice Gas baseline: the design of reference document 003 (Table 1), one contract deployed per order.
/// The seller deploys it with the item; the buyer pays with buy(); the warehouse calls verifyOwnership().
contract PaperSalesOrder {
    address public seller;
    address public buyer;
    string private make;
    string private model;
    uint256 private year;
    uint256 private price;
    bool private sold;

    constructor(string memory make_, string memory model_, uint256 year_, uint256 price_) {
        seller = msg.sender;
        make = make_;
        model = model_;
        year = year_;
        price = price_;
    }

    function buy() external payable {
        require(!sold, "sold");
        require(msg.value == price, "price");
        buyer = msg.sender;
        sold = true;
        payable(seller).transfer(msg.value);
    }

    function isSold() external view returns (bool) {
        return sold;
    }

    function getItem() external view returns (string memory, string memory, uint256, uint256, bool, address, address) {
        return (make, model, year, price, sold, seller, buyer);
    }

    function verifyOwnership(address claimant) external view returns (bool) {
        return sold && claimant == buyer;
    }
}
