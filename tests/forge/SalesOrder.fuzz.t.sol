// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC721} from "@openzeppelin/contracts/token/ERC721/IERC721.sol";
import {IDeviceRegistry} from "../../interfaces/IDeviceRegistry.sol";
import {IPullPayments} from "../../interfaces/IPullPayments.sol";
import {ISalesOrder} from "../../interfaces/ISalesOrder.sol";
import {ItemCodec} from "../../contracts/libraries/ItemCodec.sol";
import {ThingledgerTest} from "./utils/ThingledgerTest.sol";

/// @notice Fuzz tests of SalesOrder: price rules, exact payment, the item catalog codec, gate authorization,
/// the buyer's consent to release, refunds (the buyer's after the deadline, the seller's at any time), and
/// device items staying in escrow until release.
contract SalesOrderFuzzTest is ThingledgerTest {
    uint256 internal constant MAX_PRICE = uint256(type(uint64).max) * 1 gwei;

    address internal seller = makeAddr("seller");
    /// @dev makeAddr's key for "seller": the seller can sign too.
    uint256 internal immutable SELLER_PK = uint256(keccak256(abi.encodePacked("seller")));
    uint256 internal constant BUYER_PK = 0xB0B;
    address internal buyer = vm.addr(BUYER_PK);
    address internal gateOwner = makeAddr("gateOwner");
    uint256 internal constant GATE_PK = 0x6A7E;

    // ================================================================== price rules

    function testFuzz_CreateOrder_WholeGweiAccepted(uint64 priceGwei) public {
        priceGwei = uint64(bound(priceGwei, 1, type(uint64).max));
        uint256 price = uint256(priceGwei) * 1 gwei;
        uint256 orderId = _list(seller, price);
        ISalesOrder.OrderView memory o = sales.getOrder(orderId);
        assertEq(o.price, price);
        assertEq(uint8(o.status), uint8(ISalesOrder.OrderStatus.Listed));
        assertEq(o.seller, seller);
        (,,, uint256 itemPrice,,,) = sales.getItem(orderId);
        assertEq(itemPrice, price);
    }

    function testFuzz_CreateOrder_FractionalGweiRefused(uint64 priceGwei, uint256 remainder) public {
        priceGwei = uint64(bound(priceGwei, 0, type(uint64).max - 1));
        uint256 price = uint256(priceGwei) * 1 gwei + bound(remainder, 1, 1 gwei - 1);
        vm.prank(seller);
        vm.expectRevert(abi.encodeWithSelector(ISalesOrder.PriceNotWholeGwei.selector, price));
        sales.createOrder(_item("Acme", "Widget", 2024, "S"), price, 0, 0);
    }

    function testFuzz_CreateOrder_AboveMaxRefused(uint256 price) public {
        price = bound(price, MAX_PRICE + 1, type(uint256).max);
        vm.prank(seller);
        vm.expectRevert(abi.encodeWithSelector(ISalesOrder.PriceOutOfRange.selector, price));
        sales.createOrder(_item("Acme", "Widget", 2024, "S"), price, 0, 0);
    }

    /// @dev Any uint256 price, including 0 and the boundaries, against the documented rule.
    function testFuzz_CreateOrder_AnyPriceFollowsRule(uint256 price, uint256 shape) public {
        shape = bound(shape, 0, 3);
        if (shape == 0) price = bound(price, 0, 3 gwei);
        else if (shape == 1) price = bound(price, MAX_PRICE - 2 gwei, MAX_PRICE + 2 gwei);
        else if (shape == 2) price = bound(price, 0, MAX_PRICE);
        bytes memory err;
        if (price == 0 || price > MAX_PRICE) err = abi.encodeWithSelector(ISalesOrder.PriceOutOfRange.selector, price);
        else if (price % 1 gwei != 0) err = abi.encodeWithSelector(ISalesOrder.PriceNotWholeGwei.selector, price);

        vm.prank(seller);
        if (err.length != 0) vm.expectRevert(err);
        uint256 orderId = sales.createOrder(_item("Acme", "Widget", 2024, "S"), price, 0, 0);
        if (err.length == 0) {
            assertEq(sales.getOrder(orderId).price, price);
            assertEq(sales.lastOrderId(), 1);
        } else {
            assertEq(sales.lastOrderId(), 0);
        }
    }

    // ================================================================== payment

    function testFuzz_Buy_OnlyExactPriceWorks(uint64 priceGwei, uint256 value) public {
        priceGwei = uint64(bound(priceGwei, 1, type(uint64).max));
        uint256 price = uint256(priceGwei) * 1 gwei;
        value = bound(value, 0, 2 * price);
        uint256 orderId = _list(seller, price);
        vm.deal(buyer, 3 * price);

        if (value != price) {
            vm.prank(buyer);
            vm.expectRevert(abi.encodeWithSelector(ISalesOrder.WrongPayment.selector, price, value));
            sales.buy{value: value}(orderId);
            assertEq(address(sales).balance, 0);
            assertFalse(sales.isSold(orderId));
        }
        vm.prank(buyer);
        sales.buy{value: price}(orderId);
        assertEq(address(sales).balance, price);
        assertEq(buyer.balance, 2 * price);
        assertTrue(sales.isSold(orderId));
        assertTrue(sales.verifyOwnership(orderId, buyer));
        assertFalse(sales.verifyOwnership(orderId, seller));
        assertEq(uint8(sales.getOrder(orderId).status), uint8(ISalesOrder.OrderStatus.Paid));

        // Paid once: nobody pays again, at any value.
        vm.prank(buyer);
        vm.expectRevert(
            abi.encodeWithSelector(ISalesOrder.WrongStatus.selector, orderId, ISalesOrder.OrderStatus.Paid)
        );
        sales.buy{value: price}(orderId);
    }

    /// @dev Off by any amount, in either direction, including a single wei.
    function testFuzz_Buy_OffByAnyAmountFails(uint64 priceGwei, uint256 off, bool over) public {
        priceGwei = uint64(bound(priceGwei, 1, type(uint64).max));
        uint256 price = uint256(priceGwei) * 1 gwei;
        uint256 value = over ? price + bound(off, 1, 100 ether) : price - bound(off, 1, price);
        uint256 orderId = _list(seller, price);
        vm.deal(buyer, value);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(ISalesOrder.WrongPayment.selector, price, value));
        sales.buy{value: value}(orderId);
    }

    function testFuzz_Buy_SellerCannotBuy(uint64 priceGwei) public {
        priceGwei = uint64(bound(priceGwei, 1, 1e12));
        uint256 price = uint256(priceGwei) * 1 gwei;
        uint256 orderId = _list(seller, price);
        vm.deal(seller, price);
        vm.prank(seller);
        vm.expectRevert(abi.encodeWithSelector(ISalesOrder.SellerCannotBuy.selector, orderId));
        sales.buy{value: price}(orderId);
    }

    // ================================================================== item codec

    /// @dev make and model of 1 to 64 arbitrary bytes and any year come back unchanged from getItem and
    /// getOrder; the same item shares its catalog entry, another year does not.
    function testFuzz_ItemCodec_RoundTrip(
        bytes memory rawMake,
        bytes memory rawModel,
        uint256 makeLength,
        uint256 modelLength,
        uint16 year,
        string memory serial
    ) public {
        string memory make = string(_fit(rawMake, bound(makeLength, 1, 64), 0x11));
        string memory model = string(_fit(rawModel, bound(modelLength, 1, 64), 0x22));
        vm.prank(seller);
        uint256 orderId = sales.createOrder(_item(make, model, year, serial), 1 gwei, 0, 0);
        _checkItem(orderId, make, model, year);

        ISalesOrder.OrderView memory o = sales.getOrder(orderId);
        assertEq(o.make, make);
        assertEq(o.model, model);
        assertEq(o.year, year);
        assertEq(o.itemTypeId, 1);

        // Same item (any serial): same catalog entry. Another year: a new one.
        vm.prank(buyer);
        uint256 again = sales.createOrder(_item(make, model, year, "other serial"), 2 gwei, 0, 0);
        assertEq(sales.getOrder(again).itemTypeId, 1);
        vm.prank(seller);
        uint256 otherYear = sales.createOrder(_item(make, model, year ^ 1, serial), 1 gwei, 0, 0);
        o = sales.getOrder(otherYear);
        assertEq(o.itemTypeId, 2);
        assertEq(o.year, year ^ 1);
        assertEq(o.make, make);
        assertEq(o.model, model);
        _checkItem(orderId, make, model, year);
    }

    function _checkItem(uint256 orderId, string memory make, string memory model, uint16 year) internal view {
        (string memory gotMake, string memory gotModel, uint16 gotYear, uint256 price, bool sold,,) =
            sales.getItem(orderId);
        assertEq(gotMake, make, "make");
        assertEq(gotModel, model, "model");
        assertEq(gotYear, year, "year");
        assertEq(price, 1 gwei);
        assertFalse(sold);
        (,,,,, address s, address b) = sales.getItem(orderId);
        assertEq(s, seller);
        assertEq(b, address(0));
    }

    /// @dev The same bytes split differently between make and model are two item types, each decoding to
    /// its own split.
    function testFuzz_ItemCodec_SplitIsUnambiguous(bytes memory raw, uint256 length, uint256 cut1, uint256 cut2, uint16 year)
        public
    {
        bytes memory all = _fit(raw, bound(length, 2, 128), 0x33);
        cut1 = bound(cut1, all.length > 64 ? all.length - 64 : 1, all.length < 65 ? all.length - 1 : 64);
        cut2 = bound(cut2, all.length > 64 ? all.length - 64 : 1, all.length < 65 ? all.length - 1 : 64);
        vm.assume(cut1 != cut2);
        (string memory make1, string memory model1) = _split(all, cut1);
        (string memory make2, string memory model2) = _split(all, cut2);

        vm.startPrank(seller);
        uint256 first = sales.createOrder(_item(make1, model1, year, ""), 1 gwei, 0, 0);
        uint256 second = sales.createOrder(_item(make2, model2, year, ""), 1 gwei, 0, 0);
        vm.stopPrank();
        ISalesOrder.OrderView memory o1 = sales.getOrder(first);
        ISalesOrder.OrderView memory o2 = sales.getOrder(second);
        assertTrue(o1.itemTypeId != o2.itemTypeId, "distinct item types");
        assertEq(o1.make, make1);
        assertEq(o1.model, model1);
        assertEq(o2.make, make2);
        assertEq(o2.model, model2);
    }

    function testFuzz_ItemCodec_InvalidLengthRefused(bytes memory raw, uint256 length, bool makeSide) public {
        // 0 or 65..300 bytes
        length = bound(length, 0, 236);
        if (length != 0) length += 64;
        bytes memory bad = _fit(raw, length, 0x44);
        ISalesOrder.Item memory item =
            makeSide ? _item(string(bad), "Model", 2024, "S") : _item("Make", string(bad), 2024, "S");
        vm.prank(seller);
        vm.expectRevert(ItemCodec.InvalidItemField.selector);
        sales.createOrder(item, 1 gwei, 0, 0);
    }

    // ================================================================== release through a gate

    /// @dev The gate releases a seller's order iff its owner granted the seller every bit of RELEASE
    /// (whatever else the mask holds), and the gate signed for exactly this order and buyer.
    function testFuzz_Release_RequiresReleaseBitAndExactSignature(uint64 mask, uint256 otherOrderSeed, address otherBuyer)
        public
    {
        mask = uint64(bound(mask, 1, type(uint64).max));
        uint256 gateId = _device(GATE_PK, gateOwner);
        vm.prank(gateOwner);
        registry.grantPermissions(gateId, seller, mask, uint64(block.timestamp + 1 days));

        uint256 orderId = _list(seller, 1 ether);
        vm.deal(buyer, 1 ether);
        vm.prank(buyer);
        sales.buy{value: 1 ether}(orderId);

        uint256 deadline = block.timestamp + 1 hours;
        ISalesOrder.BuyerConsent memory consent =
            _consent(address(sales), BUYER_PK, orderId, gateId, keccak256("challenge"), block.timestamp + 2 minutes);
        if (mask & RELEASE == 0) {
            bytes memory sig0 = _signRelease(registry, address(sales), GATE_PK, gateId, orderId, buyer, deadline);
            vm.expectRevert(abi.encodeWithSelector(ISalesOrder.GateNotAuthorized.selector, gateId, seller));
            sales.release(orderId, gateId, deadline, sig0, consent);
            assertEq(sales.creditOf(seller), 0);
            return;
        }

        // A signature for another order or another buyer does not release this one.
        uint256 otherOrder = otherOrderSeed == orderId ? orderId + 1 : otherOrderSeed;
        bytes memory wrongOrder = _signRelease(registry, address(sales), GATE_PK, gateId, otherOrder, buyer, deadline);
        vm.expectRevert(abi.encodeWithSelector(IDeviceRegistry.InvalidDeviceSignature.selector, gateId));
        sales.release(orderId, gateId, deadline, wrongOrder, consent);
        if (otherBuyer != buyer) {
            bytes memory wrongBuyer =
                _signRelease(registry, address(sales), GATE_PK, gateId, orderId, otherBuyer, deadline);
            vm.expectRevert(abi.encodeWithSelector(IDeviceRegistry.InvalidDeviceSignature.selector, gateId));
            sales.release(orderId, gateId, deadline, wrongBuyer, consent);
        }

        bytes memory sig = _signRelease(registry, address(sales), GATE_PK, gateId, orderId, buyer, deadline);
        vm.expectEmit(true, true, true, true, address(sales));
        emit ISalesOrder.OrderReleased(orderId, gateId, buyer);
        sales.release(orderId, gateId, deadline, sig, consent);
        assertEq(sales.creditOf(seller), 1 ether);
        assertEq(registry.getDevice(gateId).nonce, 2);
        assertTrue(sales.verifyOwnership(orderId, buyer));

        uint256 before = seller.balance;
        vm.prank(seller);
        sales.withdraw();
        assertEq(seller.balance - before, 1 ether);
        assertEq(sales.creditOf(seller), 0);
        assertEq(address(sales).balance, 0);
    }


    // ================================================================== the buyer's consent

    /// @dev A paid order at a gate that admitted its seller, and the gate's genuine Release signature.
    struct PaidAtGate {
        uint256 gateId;
        uint256 orderId;
        uint256 deadline;
        bytes gateSig;
    }

    /// @dev A paid order of `seller` (1 ether) at an admitted gate, with the gate's genuine signature.
    function _paidOrderAtGate() internal returns (PaidAtGate memory t) {
        t.gateId = _device(GATE_PK, gateOwner);
        vm.prank(gateOwner);
        registry.grantPermissions(t.gateId, seller, RELEASE, uint64(block.timestamp + 1 days));
        t.orderId = _list(seller, 1 ether);
        vm.deal(buyer, 1 ether);
        vm.prank(buyer);
        sales.buy{value: 1 ether}(t.orderId);
        t.deadline = block.timestamp + 1 hours;
        t.gateSig = _signRelease(registry, address(sales), GATE_PK, t.gateId, t.orderId, buyer, t.deadline);
    }

    function _release(PaidAtGate memory t, bytes32 challenge, uint256 expiresAt, bytes memory signature) internal {
        sales.release(
            t.orderId,
            t.gateId,
            t.deadline,
            t.gateSig,
            ISalesOrder.BuyerConsent({challenge: challenge, expiresAt: expiresAt, signature: signature})
        );
    }

    function _expectRefused(uint256 orderId) internal {
        vm.expectRevert(abi.encodeWithSelector(ISalesOrder.InvalidBuyerConsent.selector, orderId));
    }

    /// @dev Every refusal left the order, the credit and the gate's nonce alone, and the buyer's own
    /// signature of exactly (`challenge`, `expiresAt`) releases with the very same gate signature.
    function _assertReleasedOnlyNow(PaidAtGate memory t, bytes32 challenge, uint256 expiresAt) internal {
        assertEq(uint8(sales.getOrder(t.orderId).status), uint8(ISalesOrder.OrderStatus.Paid));
        assertEq(sales.creditOf(seller), 0);
        assertEq(registry.getDevice(t.gateId).nonce, 1);
        assertEq(address(sales).balance, 1 ether);
        bytes memory exact =
            _signPickupWith(BUYER_PK, address(sales), block.chainid, t.orderId, t.gateId, challenge, expiresAt);
        vm.expectEmit(true, true, true, true, address(sales));
        emit ISalesOrder.OrderReleased(t.orderId, t.gateId, buyer);
        _release(t, challenge, expiresAt, exact);
        assertEq(sales.creditOf(seller), 1 ether);
        assertEq(registry.getDevice(t.gateId).nonce, 2);
    }

    /// @dev Any key but the buyer's (the seller's, the gate's, or any fuzzed key), signing exactly the
    /// submitted challenge and expiry in SalesOrder's real domain, is refused; the buyer's signature of the
    /// same fields releases.
    function testFuzz_Release_ConsentSignedByAnyOtherKeyRefused(
        uint256 signerSeed,
        bytes32 challenge,
        uint256 expiresAt,
        uint8 who
    ) public {
        PaidAtGate memory t = _paidOrderAtGate();
        expiresAt = bound(expiresAt, block.timestamp, type(uint256).max);
        assertEq(vm.addr(SELLER_PK), seller);
        uint256 signerPk = who % 4 == 0 ? SELLER_PK : who % 4 == 1 ? GATE_PK : _pk(signerSeed);
        vm.assume(signerPk != BUYER_PK);

        bytes memory forged =
            _signPickupWith(signerPk, address(sales), block.chainid, t.orderId, t.gateId, challenge, expiresAt);
        _expectRefused(t.orderId);
        _release(t, challenge, expiresAt, forged);
        // whoever submits it: the seller, or the buyer itself
        vm.prank(seller);
        _expectRefused(t.orderId);
        _release(t, challenge, expiresAt, forged);
        vm.prank(buyer);
        _expectRefused(t.orderId);
        _release(t, challenge, expiresAt, forged);
        // The consent is checked before the registry sees the gate's signature (here a forged one too).
        PaidAtGate memory badGate = PaidAtGate(t.gateId, t.orderId, t.deadline, _malleate(t.gateSig));
        _expectRefused(t.orderId);
        _release(badGate, challenge, expiresAt, forged);

        _assertReleasedOnlyNow(t, challenge, expiresAt);
    }

    /// @dev The buyer's own signature, but of a message differing in one field (order, gate, challenge,
    /// expiry, chain id, verifying contract, or domain name) from what is submitted, is refused.
    function testFuzz_Release_BuyerConsentOfOtherFieldsRefused(
        bytes32 challenge,
        uint256 expiresAt,
        uint256 field,
        uint256 other
    ) public {
        PaidAtGate memory t = _paidOrderAtGate();
        expiresAt = bound(expiresAt, block.timestamp, type(uint256).max);
        bytes memory signature =
            _buyerSignsOneFieldOff(t.orderId, t.gateId, challenge, expiresAt, bound(field, 0, 6), other);
        _expectRefused(t.orderId);
        _release(t, challenge, expiresAt, signature);

        _assertReleasedOnlyNow(t, challenge, expiresAt);
    }

    /// @dev The buyer's genuine consent is refused once its challenge expired, and accepted up to the second.
    function testFuzz_Release_ExpiredConsentRefused(bytes32 challenge, uint256 expiresAt, uint256 lateBy) public {
        PaidAtGate memory t = _paidOrderAtGate();
        // Within the gate's one-day RELEASE grant, so that only the consent's age can fail.
        expiresAt = bound(expiresAt, block.timestamp, block.timestamp + 12 hours);
        lateBy = bound(lateBy, 1, 11 hours);
        bytes memory consent =
            _signPickupWith(BUYER_PK, address(sales), block.chainid, t.orderId, t.gateId, challenge, expiresAt);
        vm.warp(expiresAt + lateBy);
        t.deadline = block.timestamp + 1 hours;
        t.gateSig = _signRelease(registry, address(sales), GATE_PK, t.gateId, t.orderId, buyer, t.deadline);
        vm.expectRevert(abi.encodeWithSelector(ISalesOrder.BuyerConsentExpired.selector, t.orderId, expiresAt));
        _release(t, challenge, expiresAt, consent);
        vm.warp(expiresAt);
        _release(t, challenge, expiresAt, consent);
        assertEq(uint8(sales.getOrder(t.orderId).status), uint8(ISalesOrder.OrderStatus.Released));
    }

    struct PickupFields {
        uint256 orderId;
        uint256 gateId;
        bytes32 challenge;
        uint256 expiresAt;
        uint256 chainId;
        address verifyingContract;
    }

    /// @dev The buyer's signature of the pickup challenge with field `field` replaced by `other` (made to
    /// differ): 0 order, 1 gate, 2 challenge, 3 expiry, 4 chain id, 5 verifying contract, 6 the registry's
    /// domain name (over SalesOrder's address or the registry's).
    function _buyerSignsOneFieldOff(
        uint256 orderId,
        uint256 gateId,
        bytes32 challenge,
        uint256 expiresAt,
        uint256 field,
        uint256 other
    ) internal view returns (bytes memory) {
        if (field == 6) {
            address domainContract = other % 2 == 0 ? address(sales) : address(registry);
            bytes32 domain = _domainSeparatorNamed("thingledger DeviceRegistry", domainContract, block.chainid);
            return _sign(BUYER_PK, _typedDigest(domain, _pickupStructHash(orderId, gateId, challenge, expiresAt)));
        }
        PickupFields memory m = PickupFields(orderId, gateId, challenge, expiresAt, block.chainid, address(sales));
        if (field == 0) m.orderId = other == orderId ? orderId + 1 : other;
        else if (field == 1) m.gateId = other == gateId ? gateId ^ 1 : other;
        else if (field == 2) m.challenge = bytes32(other) == challenge ? ~challenge : bytes32(other);
        else if (field == 3) m.expiresAt = other == expiresAt ? expiresAt ^ 1 : other;
        else if (field == 4) m.chainId = other == block.chainid ? block.chainid + 1 : other;
        else m.verifyingContract = address(uint160(other)) == address(sales) ? address(registry) : address(uint160(other));
        return _signPickupWith(BUYER_PK, m.verifyingContract, m.chainId, m.orderId, m.gateId, m.challenge, m.expiresAt);
    }

    /// @dev Arbitrary signature bytes (any length), and the malleable high-s twin of the buyer's genuine
    /// signature (which ecrecover accepts), are refused.
    function testFuzz_Release_ArbitraryOrMalleatedConsentSignatureRefused(bytes memory garbage, bytes32 challenge)
        public
    {
        PaidAtGate memory t = _paidOrderAtGate();
        uint256 expiresAt = block.timestamp + 2 minutes;
        bytes memory genuine =
            _signPickupWith(BUYER_PK, address(sales), block.chainid, t.orderId, t.gateId, challenge, expiresAt);
        vm.assume(keccak256(garbage) != keccak256(genuine));

        _expectRefused(t.orderId);
        _release(t, challenge, expiresAt, garbage);

        bytes memory twin = _malleate(genuine);
        bytes32 digest = sales.pickupDigest(t.orderId, t.gateId, challenge, expiresAt);
        assertEq(ecrecover(digest, uint8(twin[64]), _word(twin, 0), _word(twin, 32)), buyer, "twin recovers");
        _expectRefused(t.orderId);
        _release(t, challenge, expiresAt, twin);

        _assertReleasedOnlyNow(t, challenge, expiresAt);
    }

    /// @dev pickupDigest is the EIP-712 digest computed here from the type string, for any fields, and
    /// the domain separator is SalesOrder's (its name, this chain, this address).
    function testFuzz_PickupDigest_MatchesIndependentEncoding(
        uint256 orderId,
        uint256 gateId,
        bytes32 challenge,
        uint256 expiresAt
    ) public view {
        bytes32 domain = _salesDomainSeparator(address(sales), block.chainid);
        assertEq(sales.domainSeparator(), domain);
        assertEq(
            sales.pickupDigest(orderId, gateId, challenge, expiresAt),
            _typedDigest(domain, _pickupStructHash(orderId, gateId, challenge, expiresAt))
        );
    }

    /// @dev THE ATTACK: a seller who owns the gate (RELEASE implicitly, the gate's key in hand) cannot
    /// release its own paid order with any consent it can produce; the buyer refunds after the deadline.
    function testFuzz_Release_SellerOwningGateCannotTakeTheEscrow(uint256 forgerSeed, bytes32 challenge, uint256 wait)
        public
    {
        uint256 sellerGate = _device(GATE_PK, seller);
        assertTrue(registry.hasPermission(sellerGate, seller, RELEASE), "the owner holds RELEASE");
        uint64 pickupDeadline = uint64(block.timestamp + 1 days);
        vm.prank(seller);
        uint256 orderId = sales.createOrder(_item("Acme", "Widget", 2024, "S"), 1 ether, pickupDeadline, 0);
        vm.deal(buyer, 1 ether);
        vm.prank(buyer);
        sales.buy{value: 1 ether}(orderId);

        uint256 forgerPk = forgerSeed % 3 == 0 ? SELLER_PK : forgerSeed % 3 == 1 ? GATE_PK : _pk(forgerSeed);
        vm.assume(forgerPk != BUYER_PK);
        _sellerTriesToRelease(sellerGate, orderId, forgerPk, challenge);
        assertEq(sales.creditOf(seller), 0);
        assertEq(uint8(sales.getOrder(orderId).status), uint8(ISalesOrder.OrderStatus.Paid));

        vm.warp(uint256(pickupDeadline) + 1 + bound(wait, 0, 365 days));
        vm.prank(buyer);
        sales.refund(orderId);
        assertEq(buyer.balance, 1 ether);
        assertEq(address(sales).balance, 0);
        vm.prank(seller);
        vm.expectRevert(abi.encodeWithSelector(IPullPayments.NothingToWithdraw.selector, seller));
        sales.withdraw();
    }

    /// @dev The seller signs the gate's Release with the gate key it holds and a consent with `forgerPk`.
    function _sellerTriesToRelease(uint256 gateId, uint256 orderId, uint256 forgerPk, bytes32 challenge) internal {
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory gateSig = _signRelease(registry, address(sales), GATE_PK, gateId, orderId, buyer, deadline);
        ISalesOrder.BuyerConsent memory forged =
            _consent(address(sales), forgerPk, orderId, gateId, challenge, block.timestamp + 2 minutes);
        vm.prank(seller);
        _expectRefused(orderId);
        sales.release(orderId, gateId, deadline, gateSig, forged);
    }

    function _word(bytes memory data, uint256 offset) internal pure returns (bytes32 word) {
        assembly {
            word := mload(add(add(data, 32), offset))
        }
    }

    // ================================================================== refund deadline

    /// @dev The buyer refunds only once the pickup deadline passed; a device item's token never leaves escrow
    /// before that, and the refund returns it to the seller with no approval from anyone.
    function testFuzz_Refund_OnlyAfterPickupDeadline(uint256 lifetime, uint256 elapsed, bool withDevice) public {
        lifetime = bound(lifetime, 1, 365 days);
        elapsed = bound(elapsed, 0, 2 * 365 days);
        uint64 pickupDeadline = uint64(block.timestamp + lifetime);
        (uint256 orderId, uint256 deviceId) = _paidOrder(pickupDeadline, withDevice);
        if (withDevice) assertEq(registry.ownerOf(deviceId), address(sales), "device stays in escrow on purchase");

        vm.warp(block.timestamp + elapsed);
        vm.prank(buyer);
        if (block.timestamp <= pickupDeadline) {
            vm.expectRevert(
                abi.encodeWithSelector(ISalesOrder.PickupDeadlineNotReached.selector, orderId, pickupDeadline)
            );
            sales.refund(orderId);
            assertEq(address(sales).balance, 1 ether);
            if (withDevice) assertEq(registry.ownerOf(deviceId), address(sales), "still in escrow");
        } else {
            sales.refund(orderId);
            assertEq(buyer.balance, 1 ether);
            assertEq(address(sales).balance, 0);
            assertEq(sales.creditOf(buyer), 0, "the buyer's own refund is sent, not credited");
            assertFalse(sales.isSold(orderId));
            assertFalse(sales.verifyOwnership(orderId, buyer));
            if (withDevice) assertEq(registry.ownerOf(deviceId), seller, "device returns on refund");
        }
    }

    /// @dev The seller refunds a paid order at any time, deadline or not: the price becomes the buyer's credit
    /// (the balance stays until the buyer withdraws it) and a device goes back to the seller.
    function testFuzz_Refund_BySellerAtAnyTime(uint256 lifetime, uint256 elapsed, bool hasDeadline, bool withDevice)
        public
    {
        uint64 pickupDeadline = hasDeadline ? uint64(block.timestamp + bound(lifetime, 1, 365 days)) : 0;
        (uint256 orderId, uint256 deviceId) = _paidOrder(pickupDeadline, withDevice);
        vm.warp(block.timestamp + bound(elapsed, 0, 20 * 365 days));

        vm.expectEmit(true, true, true, true, address(sales));
        emit ISalesOrder.OrderRefunded(orderId, buyer, 1 ether);
        vm.prank(seller);
        sales.refund(orderId);
        assertEq(uint8(sales.getOrder(orderId).status), uint8(ISalesOrder.OrderStatus.Refunded));
        assertEq(sales.creditOf(buyer), 1 ether, "buyer credited the price");
        assertEq(sales.creditOf(seller), 0);
        assertEq(buyer.balance, 0, "nothing sent yet");
        assertEq(address(sales).balance, 1 ether, "balance == credits");
        if (withDevice) assertEq(registry.ownerOf(deviceId), seller, "device back to the seller");

        vm.prank(buyer);
        vm.expectRevert(
            abi.encodeWithSelector(ISalesOrder.WrongStatus.selector, orderId, ISalesOrder.OrderStatus.Refunded)
        );
        sales.refund(orderId);
        vm.prank(buyer);
        sales.withdraw();
        assertEq(buyer.balance, 1 ether);
        assertEq(address(sales).balance, 0);
    }

    /// @dev Nobody but the buyer and the seller refunds, whenever it is.
    function testFuzz_Refund_ByAnyoneElseRefused(address caller, uint256 elapsed, bool withDevice) public {
        vm.assume(caller != buyer && caller != seller);
        (uint256 orderId, uint256 deviceId) = _paidOrder(uint64(block.timestamp + 1 days), withDevice);
        vm.warp(block.timestamp + bound(elapsed, 0, 10 days));
        vm.prank(caller);
        vm.expectRevert(abi.encodeWithSelector(ISalesOrder.NotBuyerOrSeller.selector, orderId, caller));
        sales.refund(orderId);
        assertEq(uint8(sales.getOrder(orderId).status), uint8(ISalesOrder.OrderStatus.Paid));
        assertEq(sales.creditOf(buyer), 0);
        assertEq(address(sales).balance, 1 ether);
        if (withDevice) assertEq(registry.ownerOf(deviceId), address(sales));
    }

    /// @dev THE IDENTITY ATTACK: while the order is Paid (refundable), the buyer cannot touch the device, by
    /// any owner-only call; after release the token is the buyer's and so are those calls.
    function testFuzz_DeviceItem_BuyerControlsTheDeviceOnlyAfterRelease(uint256 newKeySeed, uint8 which) public {
        uint256 gateId = _device(GATE_PK, gateOwner);
        vm.prank(gateOwner);
        registry.grantPermissions(gateId, seller, RELEASE, uint64(block.timestamp + 1 days));
        (uint256 orderId, uint256 deviceId) = _paidOrder(uint64(block.timestamp + 1 days), true);
        uint256 newPk = _pk(newKeySeed);
        vm.assume(!registry.isKeyUsed(vm.addr(newPk)));
        bytes memory call_ = _ownerOnlyCall(deviceId, newPk, which % 5);

        (bool ok, bytes memory reason) = _callRegistryAs(buyer, call_);
        assertFalse(ok, "buyer managed an escrowed device");
        assertEq(reason, abi.encodeWithSelector(IDeviceRegistry.NotDeviceOwner.selector, deviceId, buyer));
        assertEq(registry.ownerOf(deviceId), address(sales));
        assertEq(registry.getDevice(deviceId).key, vm.addr(0xDE71CE));

        vm.expectEmit(true, true, true, true, address(registry));
        emit IERC721.Transfer(address(sales), buyer, deviceId);
        _releaseToBuyer(gateId, orderId);
        assertEq(registry.ownerOf(deviceId), buyer, "release hands the token over");
        // The signature of a rotation must be made against the current nonce: build the call again.
        (ok, reason) = _callRegistryAs(buyer, _ownerOnlyCall(deviceId, newPk, which % 5));
        assertTrue(ok, "the buyer owns the device after release");
    }

    /// @dev One owner-only registry call on `deviceId`: 0 rotateKey (to `newPk`), 1 decommission, 2 suspend,
    /// 3 grantPermissions (to the caller-to-be, the buyer), 4 revokePermissions.
    function _ownerOnlyCall(uint256 deviceId, uint256 newPk, uint256 which) internal view returns (bytes memory) {
        if (which == 0) {
            uint256 deadline = block.timestamp + 1 hours;
            return abi.encodeCall(
                IDeviceRegistry.rotateKey,
                (deviceId, vm.addr(newPk), deadline, _signRotateKey(registry, newPk, deviceId, deadline))
            );
        }
        if (which == 1) return abi.encodeCall(IDeviceRegistry.decommission, (deviceId));
        if (which == 2) return abi.encodeCall(IDeviceRegistry.suspend, (deviceId));
        if (which == 3) {
            return abi.encodeCall(
                IDeviceRegistry.grantPermissions, (deviceId, buyer, type(uint64).max, uint64(block.timestamp + 1 days))
            );
        }
        return abi.encodeCall(IDeviceRegistry.revokePermissions, (deviceId, seller));
    }

    /// @dev Releases `orderId` to `buyer` through `gateId` (key GATE_PK), with the buyer's consent.
    function _releaseToBuyer(uint256 gateId, uint256 orderId) internal {
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory gateSig = _signRelease(registry, address(sales), GATE_PK, gateId, orderId, buyer, deadline);
        ISalesOrder.BuyerConsent memory consent =
            _consent(address(sales), BUYER_PK, orderId, gateId, keccak256("c"), block.timestamp + 2 minutes);
        sales.release(orderId, gateId, deadline, gateSig, consent);
    }

    function _callRegistryAs(address caller, bytes memory data) internal returns (bool ok, bytes memory ret) {
        vm.prank(caller);
        (ok, ret) = address(registry).call(data);
    }

    /// @dev A 1-ether order of `seller` (a device item of key 0xDE71CE when asked), bought by `buyer`.
    function _paidOrder(uint64 pickupDeadline, bool withDevice) internal returns (uint256 orderId, uint256 deviceId) {
        if (withDevice) {
            deviceId = _device(0xDE71CE, seller);
            vm.prank(seller);
            registry.approve(address(sales), deviceId);
        }
        vm.prank(seller);
        orderId = sales.createOrder(_item("Acme", "Widget", 2024, "S"), 1 ether, pickupDeadline, deviceId);
        vm.deal(buyer, 1 ether);
        vm.prank(buyer);
        sales.buy{value: 1 ether}(orderId);
        if (withDevice) assertEq(registry.ownerOf(deviceId), address(sales), "escrow holds the device while Paid");
    }

    // ================================================================== helpers

    /// @dev Exactly `length` bytes: `raw` repeated, or a pattern derived from `salt` when `raw` is empty.
    function _fit(bytes memory raw, uint256 length, uint8 salt) internal pure returns (bytes memory out) {
        out = new bytes(length);
        for (uint256 i; i < length; ++i) {
            out[i] = raw.length == 0 ? bytes1(uint8(i * 31 + salt)) : raw[i % raw.length];
        }
    }

    function _split(bytes memory all, uint256 cut) internal pure returns (string memory a, string memory b) {
        bytes memory x = new bytes(cut);
        bytes memory y = new bytes(all.length - cut);
        for (uint256 i; i < cut; ++i) {
            x[i] = all[i];
        }
        for (uint256 i; i < y.length; ++i) {
            y[i] = all[cut + i];
        }
        return (string(x), string(y));
    }
}
