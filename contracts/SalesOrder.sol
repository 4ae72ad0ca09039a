// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {IDeviceRegistry} from "../interfaces/IDeviceRegistry.sol";
import {ISalesOrder} from "../interfaces/ISalesOrder.sol";
import {DevicePermissions} from "./libraries/DevicePermissions.sol";
import {ItemCodec} from "./libraries/ItemCodec.sol";
import {PullPayments} from "./PullPayments.sol";
import {SignatureVerifier} from "./libraries/SignatureVerifier.sol";

/// @title SalesOrder
/// @notice Every sales order in one contract: list, buy (money and a device item's token held in escrow),
/// release by an authorized warehouse gate device with the buyer's signed consent, refund (by the buyer
/// after the pickup deadline, by the seller at any time), and pull payments.
/// @dev An order is one storage slot (seller, status, item type, price in gwei), plus a second one for its
/// buyer and pickup deadline; make, model and year live in a catalogue of item types shared by all orders.
/// Pausing stops new orders and purchases only; money can always leave. While an order holds a device's
/// token, nobody (the seller included) can suspend, rotate or decommission that device: cancel or refund first.
contract SalesOrder is ISalesOrder, AccessControl, Pausable, PullPayments, EIP712 {
    /// @notice Role that may pause and unpause new orders and purchases.
    bytes32 public constant PAUSER_ROLE = keccak256("PAUSER_ROLE");

    bytes32 private constant RELEASE_TYPEHASH = keccak256("Release(uint256 orderId,address buyer)");
    bytes32 private constant PICKUP_TYPEHASH =
        keccak256("PickupChallenge(uint256 orderId,uint256 gateId,bytes32 challenge,uint256 expiresAt)");

    /// @dev slot 0, written by createOrder: seller | status | item type | price in gwei.
    /// slot 1, written by buy (and by createOrder only when a pickup deadline is set): buyer | pickup deadline.
    struct Order {
        address seller;
        OrderStatus status;
        uint24 itemTypeId;
        uint64 priceGwei;
        address buyer;
        uint64 pickupDeadline;
    }

    /// @notice The device registry whose gates release orders and whose tokens can be sold.
    IDeviceRegistry public immutable registry;

    mapping(uint256 orderId => Order) private _orders;
    mapping(uint256 orderId => uint256 deviceId) private _orderDevice;
    mapping(uint256 itemTypeId => bytes packed) private _itemTypes;
    mapping(bytes32 packedHash => uint24 itemTypeId) private _itemTypeIds;
    uint64 private _lastOrderId;
    uint24 private _lastItemTypeId;

    /// @param registry_ The DeviceRegistry.
    /// @param admin Receives DEFAULT_ADMIN_ROLE and PAUSER_ROLE.
    constructor(IDeviceRegistry registry_, address admin) EIP712("thingledger SalesOrder", "1") {
        if (address(registry_) == address(0) || admin == address(0)) revert ZeroAddress();
        registry = registry_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(PAUSER_ROLE, admin);
    }

    // ------------------------------------------------------------------ seller

    /// @inheritdoc ISalesOrder
    function createOrder(Item calldata item, uint256 price, uint64 pickupDeadline, uint256 deviceId)
        external
        whenNotPaused
        returns (uint256 orderId)
    {
        if (price == 0 || price > uint256(type(uint64).max) * 1 gwei) revert PriceOutOfRange(price);
        if (price % 1 gwei != 0) revert PriceNotWholeGwei(price);
        if (pickupDeadline != 0 && pickupDeadline <= block.timestamp) revert DeadlineInPast(pickupDeadline);
        uint24 itemTypeId = _itemTypeId(item);
        orderId = ++_lastOrderId;
        Order storage order = _orders[orderId];
        order.seller = msg.sender;
        order.status = OrderStatus.Listed;
        order.itemTypeId = itemTypeId;
        order.priceGwei = uint64(price / 1 gwei);
        if (pickupDeadline != 0) order.pickupDeadline = pickupDeadline;
        if (deviceId != 0) {
            _orderDevice[orderId] = deviceId;
            // Reverts unless the caller owns the token and approved this contract.
            registry.transferFrom(msg.sender, address(this), deviceId);
        }
        emit OrderCreated(orderId, msg.sender, deviceId, itemTypeId, price, pickupDeadline, item);
    }

    /// @inheritdoc ISalesOrder
    function cancel(uint256 orderId) external nonReentrant {
        Order storage order = _orders[orderId];
        _requireStatus(orderId, order.status, OrderStatus.Listed);
        if (order.seller != msg.sender) revert NotSeller(orderId, msg.sender);
        order.status = OrderStatus.Cancelled;
        emit OrderCancelled(orderId, msg.sender);
        uint256 deviceId = _orderDevice[orderId];
        if (deviceId != 0) registry.transferFrom(address(this), msg.sender, deviceId);
    }

    // ------------------------------------------------------------------ buyer

    /// @inheritdoc ISalesOrder
    function buy(uint256 orderId) external payable whenNotPaused nonReentrant {
        Order storage order = _orders[orderId];
        _requireStatus(orderId, order.status, OrderStatus.Listed);
        address seller = order.seller;
        if (seller == msg.sender) revert SellerCannotBuy(orderId);
        uint256 price = _price(order);
        if (msg.value != price) revert WrongPayment(price, msg.value);
        uint64 deadline = order.pickupDeadline;
        if (deadline != 0 && block.timestamp > deadline) revert PickupDeadlinePassed(orderId, deadline);
        order.status = OrderStatus.Paid;
        order.buyer = msg.sender;
        emit OrderPaid(orderId, msg.sender, seller, msg.value);
    }

    /// @inheritdoc ISalesOrder
    function refund(uint256 orderId) external nonReentrant {
        Order storage order = _orders[orderId];
        _requireStatus(orderId, order.status, OrderStatus.Paid);
        address buyer = order.buyer;
        address seller = order.seller;
        if (msg.sender == buyer) {
            uint64 deadline = order.pickupDeadline;
            if (deadline == 0 || block.timestamp <= deadline) revert PickupDeadlineNotReached(orderId, deadline);
        } else if (msg.sender != seller) {
            revert NotBuyerOrSeller(orderId, msg.sender);
        }
        uint256 amount = _price(order);
        order.status = OrderStatus.Refunded;
        emit OrderRefunded(orderId, buyer, amount);
        uint256 deviceId = _orderDevice[orderId];
        if (deviceId != 0) registry.transferFrom(address(this), seller, deviceId);
        if (msg.sender == buyer) {
            // Money only ever leaves to the caller, after every state change.
            Address.sendValue(payable(msg.sender), amount);
        } else {
            // The seller gives the money back: it becomes the buyer's credit (pull payment).
            _credit(buyer, amount);
        }
    }

    // ------------------------------------------------------------------ warehouse gate

    /// @inheritdoc ISalesOrder
    function release(
        uint256 orderId,
        uint256 gateId,
        uint256 deadline,
        bytes calldata gateSignature,
        BuyerConsent calldata consent
    ) external {
        Order storage order = _orders[orderId];
        _requireStatus(orderId, order.status, OrderStatus.Paid);
        address seller = order.seller;
        address buyer = order.buyer;
        if (!registry.hasPermission(gateId, seller, DevicePermissions.RELEASE)) {
            revert GateNotAuthorized(gateId, seller);
        }
        if (block.timestamp > consent.expiresAt) revert BuyerConsentExpired(orderId, consent.expiresAt);
        bytes32 pickupDigest_ = _pickupDigest(orderId, gateId, consent.challenge, consent.expiresAt);
        if (!SignatureVerifier.isValidNow(buyer, pickupDigest_, consent.signature)) {
            revert InvalidBuyerConsent(orderId);
        }
        order.status = OrderStatus.Released;
        _credit(seller, _price(order));
        emit OrderReleased(orderId, gateId, buyer);
        // Checks the gate is Active and the signature is its current key's; consumes its nonce.
        registry.useDeviceAction(gateId, _releaseActionHash(orderId, buyer), deadline, gateSignature);
        // A device item's token stays in escrow until here: a buyer who could refund must never have held it.
        uint256 deviceId = _orderDevice[orderId];
        if (deviceId != 0) registry.transferFrom(address(this), buyer, deviceId);
    }

    // ------------------------------------------------------------------ admin

    /// @notice Stops new orders and purchases. Cancellation, release, refund and withdrawal keep working.
    function pause() external onlyRole(PAUSER_ROLE) {
        _pause();
    }

    /// @notice Lifts `pause`.
    function unpause() external onlyRole(PAUSER_ROLE) {
        _unpause();
    }

    // ------------------------------------------------------------------ views

    /// @inheritdoc ISalesOrder
    function isSold(uint256 orderId) public view returns (bool) {
        OrderStatus status = _orders[orderId].status;
        return status == OrderStatus.Paid || status == OrderStatus.Released;
    }

    /// @inheritdoc ISalesOrder
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
        )
    {
        Order storage order = _existing(orderId);
        (make, model, year) = ItemCodec.decode(_itemTypes[order.itemTypeId]);
        return (make, model, year, _price(order), isSold(orderId), order.seller, order.buyer);
    }

    /// @inheritdoc ISalesOrder
    function verifyOwnership(uint256 orderId, address claimant) external view returns (bool) {
        return claimant != address(0) && isSold(orderId) && _orders[orderId].buyer == claimant;
    }

    /// @inheritdoc ISalesOrder
    function getOrder(uint256 orderId) external view returns (OrderView memory view_) {
        Order storage order = _existing(orderId);
        (string memory make, string memory model, uint16 year) = ItemCodec.decode(_itemTypes[order.itemTypeId]);
        view_ = OrderView({
            seller: order.seller,
            buyer: order.buyer,
            price: _price(order),
            status: order.status,
            pickupDeadline: order.pickupDeadline,
            deviceId: _orderDevice[orderId],
            itemTypeId: order.itemTypeId,
            make: make,
            model: model,
            year: year
        });
    }

    /// @inheritdoc ISalesOrder
    function pickupDigest(uint256 orderId, uint256 gateId, bytes32 challenge, uint256 expiresAt)
        external
        view
        returns (bytes32)
    {
        return _pickupDigest(orderId, gateId, challenge, expiresAt);
    }

    /// @notice The EIP-712 domain separator of this contract (chain id and address bound).
    /// @return The domain separator.
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    /// @inheritdoc ISalesOrder
    function releaseActionHash(uint256 orderId, address buyer) external pure returns (bytes32) {
        return _releaseActionHash(orderId, buyer);
    }

    /// @notice The id the next order will get minus one: the number of orders ever created.
    /// @return The last order id, 0 before the first order.
    function lastOrderId() external view returns (uint256) {
        return _lastOrderId;
    }

    // ------------------------------------------------------------------ internals

    /// @dev The catalog id of the item's (make, model, year), registering it on first use.
    function _itemTypeId(Item calldata item) private returns (uint24 itemTypeId) {
        bytes memory packed = ItemCodec.encode(item.make, item.model, item.year);
        bytes32 packedHash = keccak256(packed);
        itemTypeId = _itemTypeIds[packedHash];
        if (itemTypeId != 0) return itemTypeId;
        if (_lastItemTypeId == type(uint24).max) revert ItemTypeLimitReached();
        itemTypeId = ++_lastItemTypeId;
        _itemTypeIds[packedHash] = itemTypeId;
        _itemTypes[itemTypeId] = packed;
        emit ItemTypeRegistered(itemTypeId, item.make, item.model, item.year);
    }

    function _price(Order storage order) private view returns (uint256) {
        return uint256(order.priceGwei) * 1 gwei;
    }

    function _existing(uint256 orderId) private view returns (Order storage order) {
        order = _orders[orderId];
        if (order.status == OrderStatus.None) revert UnknownOrder(orderId);
    }

    function _requireStatus(uint256 orderId, OrderStatus actual, OrderStatus expected) private pure {
        if (actual == OrderStatus.None) revert UnknownOrder(orderId);
        if (actual != expected) revert WrongStatus(orderId, actual);
    }

    function _pickupDigest(uint256 orderId, uint256 gateId, bytes32 challenge, uint256 expiresAt)
        private
        view
        returns (bytes32)
    {
        return _hashTypedDataV4(keccak256(abi.encode(PICKUP_TYPEHASH, orderId, gateId, challenge, expiresAt)));
    }

    function _releaseActionHash(uint256 orderId, address buyer) private pure returns (bytes32) {
        return keccak256(abi.encode(RELEASE_TYPEHASH, orderId, buyer));
    }

}
