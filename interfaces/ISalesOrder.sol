// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IPullPayments} from "./IPullPayments.sol";

/// @title ISalesOrder
/// @notice The sales order of Banerjee & Jiang (reference document 003) with every order in one contract:
/// a seller lists an item, a buyer pays with `buy`, a warehouse gate device checks `verifyOwnership` for
/// the buyer who shows the receipt and signs its challenge, then releases the item; the seller withdraws.
///
///     createOrder()          buy()           release()
///   ──────────────> Listed ────────> Paid ────────────> Released  (seller's credit, withdraw())
///                     │                │
///          cancel()   v                v  refund(): by the buyer after the pickup deadline,
///                 Cancelled         Refunded            or by the seller at any time
interface ISalesOrder is IPullPayments {
    /// @notice Where an order is. `None` means the id was never created.
    enum OrderStatus {
        None,
        Listed,
        Paid,
        Released,
        Refunded,
        Cancelled
    }

    /// @notice The item description of the paper's Table 1, plus a serial number.
    struct Item {
        string make;
        string model;
        uint16 year;
        string serial;
    }

    /// @notice The buyer's consent to a pickup: their EIP-712 signature of the challenge the gate issued,
    /// `PickupChallenge(uint256 orderId,uint256 gateId,bytes32 challenge,uint256 expiresAt)` in this
    /// contract's domain. It proves on chain that the buyer stood at the gate; it expires with the challenge.
    struct BuyerConsent {
        bytes32 challenge;
        uint256 expiresAt;
        bytes signature;
    }

    /// @notice Everything stored about an order, decoded. The serial is not stored: it is in `OrderCreated`.
    struct OrderView {
        address seller;
        address buyer;
        uint256 price;
        OrderStatus status;
        uint64 pickupDeadline;
        uint256 deviceId;
        uint256 itemTypeId;
        string make;
        string model;
        uint16 year;
    }

    /// @notice A new item type (make, model, year) entered the catalog that orders share.
    event ItemTypeRegistered(uint256 indexed itemTypeId, string make, string model, uint16 year);
    /// @notice A seller listed an item. `deviceId` is 0 unless the item is a registered device, whose token
    /// is now held by this contract until the item is released to the buyer (or the order is cancelled or
    /// refunded, when it goes back to the seller).
    event OrderCreated(
        uint256 indexed orderId,
        address indexed seller,
        uint256 indexed deviceId,
        uint256 itemTypeId,
        uint256 price,
        uint64 pickupDeadline,
        Item item
    );
    /// @notice The seller withdrew a listed order.
    event OrderCancelled(uint256 indexed orderId, address indexed seller);
    /// @notice A buyer paid; the money is held until release or refund.
    event OrderPaid(uint256 indexed orderId, address indexed buyer, address indexed seller, uint256 price);
    /// @notice Gate device `gateId` released the item to the buyer; the price is now the seller's credit.
    event OrderReleased(uint256 indexed orderId, uint256 indexed gateId, address indexed buyer);
    /// @notice The order was undone: the buyer took the money back after the pickup deadline, or the seller
    /// gave it back (then it is the buyer's credit, see `withdraw`).
    event OrderRefunded(uint256 indexed orderId, address indexed buyer, uint256 amount);

    error ZeroAddress();
    error UnknownOrder(uint256 orderId);
    error NotSeller(uint256 orderId, address caller);
    error NotBuyerOrSeller(uint256 orderId, address caller);
    error WrongStatus(uint256 orderId, OrderStatus status);
    error PriceOutOfRange(uint256 price);
    error PriceNotWholeGwei(uint256 price);
    error ItemTypeLimitReached();
    error DeadlineInPast(uint64 pickupDeadline);
    error PickupDeadlinePassed(uint256 orderId, uint64 pickupDeadline);
    error PickupDeadlineNotReached(uint256 orderId, uint64 pickupDeadline);
    error WrongPayment(uint256 expected, uint256 sent);
    error SellerCannotBuy(uint256 orderId);
    error GateNotAuthorized(uint256 gateId, address seller);
    error InvalidBuyerConsent(uint256 orderId);
    error BuyerConsentExpired(uint256 orderId, uint256 expiresAt);

    /// @notice Lists an item for sale. An order is one storage slot: its make, model and year live in a
    /// catalog of item types shared by all orders (registered on first use), its serial in `OrderCreated`.
    /// @dev When `deviceId` is not 0, the caller must own that device token and have approved this contract;
    /// the token is held here until the item is released (it passes to the buyer inside `release`), the
    /// order is cancelled or refunded (it goes back to the seller). The buyer never holds it while a refund
    /// is possible, so a buyer cannot take over the device (rotate its key, decommission it) and refund.
    /// @param item Make, model, year, serial; make and model are 1 to 64 bytes each.
    /// @param price Price in wei: a whole number of gwei (10^9 wei), at most 2^64 - 1 gwei.
    /// @param pickupDeadline Timestamp after which an unreleased paid order can be refunded; 0 for none
    /// (then the money stays until release). Must be in the future when set.
    /// @param deviceId The registered device being sold, or 0.
    /// @return orderId The new order's id (ids start at 1).
    function createOrder(Item calldata item, uint256 price, uint64 pickupDeadline, uint256 deviceId)
        external
        returns (uint256 orderId);

    /// @notice Withdraws a listed order; a held device token goes back to the seller.
    /// @param orderId The order.
    function cancel(uint256 orderId) external;

    /// @notice Buys an order by paying exactly its price, held in escrow until release or refund.
    /// @param orderId The order.
    function buy(uint256 orderId) external payable;

    /// @notice Records that warehouse gate `gateId` handed the item to the buyer, which makes the price the
    /// seller's credit and passes a device item's token to the buyer. Two signatures are needed, so that neither the gate (nor a seller who controls it)
    /// nor the buyer alone can release:
    /// - the gate's: it must be an Active device whose owner admitted the seller with `RELEASE`
    ///   permission, signing DeviceRegistry's `DeviceAction` with `target` this contract and
    ///   `action = hashStruct(Release(uint256 orderId,address buyer))`, in the registry's EIP-712 domain;
    /// - the buyer's: `consent`, the buyer's signature of the gate's pickup challenge (by its key, or by
    ///   ERC-1271 for a contract wallet), accepted until the challenge's `expiresAt`.
    /// @param orderId The order.
    /// @param gateId The gate device.
    /// @param deadline Last timestamp at which the gate's signature is accepted.
    /// @param gateSignature The gate key's signature.
    /// @param consent The buyer's signed pickup challenge.
    function release(
        uint256 orderId,
        uint256 gateId,
        uint256 deadline,
        bytes calldata gateSignature,
        BuyerConsent calldata consent
    ) external;

    /// @notice Undoes a paid order that was not released: the buyer may call it after the pickup deadline
    /// (the money is sent at once); the seller may call it at any time, giving the money back (it becomes the
    /// buyer's credit). A device item's token goes back to the seller from escrow.
    /// @param orderId The order.
    function refund(uint256 orderId) external;


    /// @notice Table 1: whether the order is sold (paid or released, not refunded).
    /// @param orderId The order.
    /// @return Whether it is sold; false for unknown orders.
    function isSold(uint256 orderId) external view returns (bool);

    /// @notice Table 1: the item and its sale.
    /// @param orderId The order; reverts for unknown orders.
    /// @return make The make.
    /// @return model The model.
    /// @return year The year.
    /// @return price The price in wei.
    /// @return sold Whether it is sold.
    /// @return seller The seller.
    /// @return buyer The buyer, or address(0).
    function getItem(uint256 orderId)
        external
        view
        returns (
            string memory make,
            string memory model,
            uint16 year,
            uint256 price,
            bool sold,
            address seller,
            address buyer
        );

    /// @notice Table 1: true only for the order's buyer while the order is paid (or released) and not
    /// refunded or cancelled. False, not a revert, for unknown orders.
    /// @param orderId The order.
    /// @param claimant Who claims to own it.
    /// @return Whether `claimant` owns the order.
    function verifyOwnership(uint256 orderId, address claimant) external view returns (bool);

    /// @notice The whole order.
    /// @param orderId The order; reverts for unknown orders.
    /// @return The order.
    function getOrder(uint256 orderId) external view returns (OrderView memory);


    /// @notice The EIP-712 digest a buyer signs to consent to picking up `orderId` at `gateId`.
    /// @param orderId The order.
    /// @param gateId The gate device that issued the challenge.
    /// @param challenge The gate's random challenge.
    /// @param expiresAt When the gate stops accepting the answer.
    /// @return The digest in this contract's domain.
    function pickupDigest(uint256 orderId, uint256 gateId, bytes32 challenge, uint256 expiresAt)
        external
        view
        returns (bytes32);

    /// @notice The struct hash a gate signs (as DeviceAction's `action`) to release `orderId` to `buyer`.
    /// @param orderId The order.
    /// @param buyer The buyer the gate verified.
    /// @return The EIP-712 struct hash of `Release(uint256 orderId,address buyer)`.
    function releaseActionHash(uint256 orderId, address buyer) external pure returns (bytes32);
}
