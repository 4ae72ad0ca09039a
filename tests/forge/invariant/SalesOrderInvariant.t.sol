// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Test, console} from "forge-std/Test.sol";
import {StdUtils} from "forge-std/StdUtils.sol";
import {StdInvariant} from "forge-std/StdInvariant.sol";
import {DeviceRegistry} from "../../../contracts/DeviceRegistry.sol";
import {SalesOrder} from "../../../contracts/SalesOrder.sol";
import {IDeviceRegistry} from "../../../interfaces/IDeviceRegistry.sol";
import {ISalesOrder} from "../../../interfaces/ISalesOrder.sol";
import {IERC721Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {ThingledgerSigning} from "../utils/ThingledgerTest.sol";

/// @notice Four traders list (some orders sell a device, some have a pickup deadline), buy (sometimes with
/// a wrong amount), release through gate A (whose owner admitted traders 0-2) or gate B (owned by trader 3)
/// with the buyer's signed pickup consent (sometimes a forged one: signed by the seller, or by the buyer for
/// the other gate), refund (the buyer, after warping past deadlines or too early; the seller, at any time;
/// someone else, always refused), cancel (sometimes as a stranger), withdraw, and try to take over an
/// escrowed device (the buyer or seller of a paid device order rotating its key, decommissioning it, ...).
contract SalesHandler is ThingledgerSigning, StdUtils {
    uint256 internal constant TRADERS = 4;
    uint256 internal constant GATE_A_PK = 0x6A7EA;
    uint256 internal constant GATE_B_PK = 0x6A7EB;
    /// @dev Trader i's key is TRADER_PK + i: buyers sign their pickup consents.
    uint256 internal constant TRADER_PK = 0x7AADE2;

    DeviceRegistry public immutable registry;
    SalesOrder public immutable sales;
    address[] public actors; // traders 0..3, then the gate owner
    uint256 public gateA;
    uint256 public gateB;
    uint256 internal nextDevicePk = 0xD0000;

    mapping(address => uint256) public ghostCredited;
    mapping(address => uint256) public ghostWithdrawn;
    uint256 public ghostViolations; // an operation that must fail succeeded, or a payout differed; stays 0
    uint256 public ghostCalls;
    uint256 public ghostCreated;
    uint256 public ghostCreatedWithDevice;
    uint256 public ghostBought;
    uint256 public ghostWrongPaymentRefused;
    uint256 public ghostReleased;
    uint256 public ghostUnauthorizedReleaseRefused;
    uint256 public ghostForgedConsentRefused;
    uint256 public ghostRefunded;
    uint256 public ghostSellerRefunds;
    uint256 public ghostEarlyBuyerRefundRefused;
    uint256 public ghostStrangerRefundRefused;
    uint256 public ghostTakeoversRefused;
    uint256 public ghostCancelled;
    uint256 public ghostWithdrawals;

    modifier counted() {
        ++ghostCalls;
        _;
    }

    constructor(DeviceRegistry registry_, SalesOrder sales_) {
        registry = registry_;
        sales = sales_;
    }

    function init() external {
        for (uint256 i; i < TRADERS; ++i) {
            actors.push(vm.addr(TRADER_PK + i));
        }
        address gateOwner = address(uint160(uint256(keccak256("gate owner"))));
        actors.push(gateOwner);
        gateA = _provisionDevice(registry, address(this), GATE_A_PK, gateOwner, true);
        gateB = _provisionDevice(registry, address(this), GATE_B_PK, actors[3], true);
        vm.startPrank(gateOwner);
        for (uint256 i; i < 3; ++i) {
            registry.grantPermissions(gateA, actors[i], RELEASE, uint64(block.timestamp + 10 * 365 days));
        }
        vm.stopPrank();
        // a few orders, two of them paid, so every run starts with something to release or refund
        for (uint256 i; i < 4; ++i) {
            _create(actors[i], (i + 1) * 0.1 ether, i % 2 == 0 ? uint64(block.timestamp + 1 days) : 0, i == 1);
        }
        _buy(1, actors[1], 0.1 ether);
        _buy(2, actors[2], 0.2 ether);
        ghostCreated = 0;
        ghostCreatedWithDevice = 0;
        ghostBought = 0;
    }

    // ------------------------------------------------------------------ actions

    function createOrder(uint256 sellerSeed, uint256 priceSeed, uint256 deadlineSeed, uint256 flags)
        external
        counted
    {
        address seller = actors[sellerSeed % TRADERS];
        uint256 price = _bound(priceSeed, 1, 1e10) * 1 gwei; // up to 10 ether
        uint64 deadline = flags % 2 == 0 ? uint64(block.timestamp + _bound(deadlineSeed, 1 hours, 10 days)) : 0;
        _create(seller, price, deadline, (flags >> 1) % 2 == 0);
    }

    function buy(uint256 orderSeed, uint256 buyerSeed, uint256 valueSeed) external counted {
        uint256 orderId = _pick(orderSeed, ISalesOrder.OrderStatus.Listed, true);
        if (orderId == 0) {
            // nothing buyable (all cancelled, sold or expired): list something first
            uint64 deadline = orderSeed % 2 == 0 ? uint64(block.timestamp + 1 days) : 0;
            _create(actors[(buyerSeed + 1) % TRADERS], _bound(valueSeed, 1, 1e10) * 1 gwei, deadline, orderSeed % 3 == 0);
            orderId = sales.lastOrderId();
        }
        ISalesOrder.OrderView memory o = sales.getOrder(orderId);
        address buyer = actors[buyerSeed % TRADERS];
        if (buyer == o.seller) buyer = actors[(buyerSeed % TRADERS + 1) % TRADERS];
        uint256 value = o.price;
        if (valueSeed % 5 == 0) value = valueSeed % 2 == 0 ? o.price + 1 gwei : o.price - 1; // wrong amount
        bool ok = _buy(orderId, buyer, value);
        if (value != o.price) {
            if (ok) ++ghostViolations;
            else ++ghostWrongPaymentRefused;
        }
    }

    function release(uint256 orderSeed, uint256 gateSeed, uint256 consentSeed) external counted {
        uint256 orderId = _pick(orderSeed, ISalesOrder.OrderStatus.Paid, false);
        if (orderId == 0) return;
        ISalesOrder.OrderView memory o = sales.getOrder(orderId);
        bool sellerIsTrader3 = o.seller == actors[3];
        // three times in four the gate that admits the seller, otherwise the other one
        // (hashed: the fuzzer's favourite round numbers must not all pick the wrong gate)
        bool useA = uint256(keccak256(abi.encode(gateSeed))) % 4 == 0 ? sellerIsTrader3 : !sellerIsTrader3;
        uint256 gateId = useA ? gateA : gateB;
        bool authorized = useA ? !sellerIsTrader3 : sellerIsTrader3;
        bytes memory sig = _signRelease(
            registry,
            address(sales),
            useA ? GATE_A_PK : GATE_B_PK,
            gateId,
            orderId,
            o.buyer,
            block.timestamp
        );
        // The buyer's consent, forged one time in five: signed by the seller (who would take the escrow),
        // or the buyer's genuine signature for the other gate.
        uint256 forgery = uint256(keccak256(abi.encode(consentSeed, "consent"))) % 10;
        bool forged = forgery < 2;
        ISalesOrder.BuyerConsent memory consent = _consent(
            address(sales),
            forgery == 0 ? _traderPk(o.seller) : _traderPk(o.buyer),
            orderId,
            forgery == 1 ? (useA ? gateB : gateA) : gateId,
            keccak256(abi.encode(consentSeed, orderId)),
            block.timestamp + 2 minutes
        );
        // the checks come in this order: the gate's admission of the seller, then the buyer's consent
        bytes memory expected;
        if (!authorized) expected = abi.encodeWithSelector(ISalesOrder.GateNotAuthorized.selector, gateId, o.seller);
        else if (forged) expected = abi.encodeWithSelector(ISalesOrder.InvalidBuyerConsent.selector, orderId);
        try sales.release(orderId, gateId, block.timestamp, sig, consent) {
            if (expected.length != 0) ++ghostViolations;
            ghostCredited[o.seller] += o.price;
            ++ghostReleased;
        } catch (bytes memory reason) {
            // an admitted gate with a perfect signature and the buyer's consent must release;
            // anything else must fail with exactly the first failing check's error
            if (expected.length == 0 || keccak256(reason) != keccak256(expected)) ++ghostViolations;
            else if (!authorized) ++ghostUnauthorizedReleaseRefused;
            else ++ghostForgedConsentRefused;
        }
    }

    /// @dev A paid order is refunded by its buyer (after warping past its deadline when asked to), by its
    /// seller (at any time: the price becomes the buyer's credit), or by someone else (always refused).
    /// No token approval is given: a device item's token goes back to the seller from escrow.
    function refund(uint256 orderSeed, bool warpPastDeadline, uint256 callerSeed) external counted {
        // when warping, prefer a paid order that has a deadline (the buyer can never refund one without)
        uint256 orderId = warpPastDeadline ? _pickWithDeadline(orderSeed) : 0;
        if (orderId == 0) orderId = _pick(orderSeed, ISalesOrder.OrderStatus.Paid, false);
        if (orderId == 0) return;
        ISalesOrder.OrderView memory o = sales.getOrder(orderId);
        if (warpPastDeadline && o.pickupDeadline != 0 && block.timestamp <= o.pickupDeadline) {
            vm.warp(uint256(o.pickupDeadline) + 1);
        }
        // half of the calls by the buyer, a quarter by the seller, a quarter by anyone else
        uint256 kind = uint256(keccak256(abi.encode(callerSeed, "refund"))) % 4;
        address caller = kind < 2 ? o.buyer : kind == 2 ? o.seller : _someoneElse(callerSeed, o.buyer, o.seller);
        bytes memory expected;
        if (kind == 3) {
            expected = abi.encodeWithSelector(ISalesOrder.NotBuyerOrSeller.selector, orderId, caller);
        } else if (kind < 2 && (o.pickupDeadline == 0 || block.timestamp <= o.pickupDeadline)) {
            expected = abi.encodeWithSelector(ISalesOrder.PickupDeadlineNotReached.selector, orderId, o.pickupDeadline);
        }
        uint256 balanceBefore = o.buyer.balance;
        uint256 creditBefore = sales.creditOf(o.buyer);
        vm.prank(caller);
        try sales.refund(orderId) {
            if (expected.length != 0) ++ghostViolations;
            if (caller == o.buyer) {
                // the buyer's own refund is paid at once
                if (o.buyer.balance != balanceBefore + o.price || sales.creditOf(o.buyer) != creditBefore) {
                    ++ghostViolations;
                }
            } else {
                // the seller's refund is the buyer's credit
                if (sales.creditOf(o.buyer) != creditBefore + o.price || o.buyer.balance != balanceBefore) {
                    ++ghostViolations;
                }
                ghostCredited[o.buyer] += o.price;
                ++ghostSellerRefunds;
            }
            ++ghostRefunded;
        } catch (bytes memory reason) {
            if (expected.length == 0 || keccak256(reason) != keccak256(expected)) ++ghostViolations;
            else if (kind == 3) ++ghostStrangerRefundRefused;
            else ++ghostEarlyBuyerRefundRefused;
        }
    }

    /// @dev THE IDENTITY ATTACK: the buyer (or the seller) of a paid device order tries to rotate the device's
    /// key, decommission or suspend it, grant itself permissions, or move the token out of escrow. Every
    /// attempt must fail: only SalesOrder owns it until release.
    function takeOverDevice(uint256 orderSeed, uint256 which) external counted {
        uint256 orderId = _pickPaidDevice(orderSeed);
        if (orderId == 0) return;
        ISalesOrder.OrderView memory o = sales.getOrder(orderId);
        address caller = (which >> 8) % 2 == 0 ? o.buyer : o.seller;
        uint256 id = o.deviceId;
        bytes memory data;
        bytes memory expected = abi.encodeWithSelector(IDeviceRegistry.NotDeviceOwner.selector, id, caller);
        which = which % 5;
        if (which == 0) {
            uint256 newPk = nextDevicePk++; // a key nobody uses (device keys come from this counter too)
            uint256 deadline = block.timestamp + 1 hours;
            data = abi.encodeCall(
                IDeviceRegistry.rotateKey, (id, vm.addr(newPk), deadline, _signRotateKey(registry, newPk, id, deadline))
            );
        } else if (which == 1) {
            data = abi.encodeCall(IDeviceRegistry.decommission, (id));
        } else if (which == 2) {
            data = abi.encodeCall(IDeviceRegistry.suspend, (id));
        } else if (which == 3) {
            data = abi.encodeCall(
                IDeviceRegistry.grantPermissions, (id, caller, type(uint64).max, uint64(block.timestamp + 1 days))
            );
        } else {
            data = abi.encodeWithSignature("transferFrom(address,address,uint256)", address(sales), caller, id);
            expected = abi.encodeWithSelector(IERC721Errors.ERC721InsufficientApproval.selector, caller, id);
        }
        IDeviceRegistry.Device memory before = registry.getDevice(id);
        vm.prank(caller);
        (bool ok, bytes memory reason) = address(registry).call(data);
        IDeviceRegistry.Device memory after_ = registry.getDevice(id);
        if (ok || keccak256(reason) != keccak256(expected)) ++ghostViolations;
        else ++ghostTakeoversRefused;
        if (after_.key != before.key || after_.state != before.state || after_.epoch != before.epoch) {
            ++ghostViolations;
        }
    }

    function cancel(uint256 orderSeed, uint256 callerSeed) external counted {
        uint256 orderId = _pick(orderSeed, ISalesOrder.OrderStatus.Listed, false);
        if (orderId == 0) return;
        address seller = sales.getOrder(orderId).seller;
        address caller = callerSeed % 4 == 0 ? actors[callerSeed % actors.length] : seller;
        vm.prank(caller);
        try sales.cancel(orderId) {
            if (caller != seller) ++ghostViolations;
            ++ghostCancelled;
        } catch {
            if (caller == seller) ++ghostViolations;
        }
    }

    function withdraw(uint256 actorSeed) external counted {
        address account = actors[actorSeed % actors.length];
        uint256 credit = sales.creditOf(account);
        uint256 before = account.balance;
        vm.prank(account);
        try sales.withdraw() {
            uint256 received = account.balance - before;
            if (received != credit) ++ghostViolations;
            ghostWithdrawn[account] += received;
            ++ghostWithdrawals;
        } catch {
            if (credit != 0) ++ghostViolations;
        }
    }

    function warp(uint256 secondsAhead) external counted {
        vm.warp(block.timestamp + _bound(secondsAhead, 0, 3 days));
    }

    // ------------------------------------------------------------------ views

    function actorCount() external view returns (uint256) {
        return actors.length;
    }

    // ------------------------------------------------------------------ internals

    function _create(address seller, uint256 price, uint64 deadline, bool withDevice) internal {
        uint256 deviceId;
        if (withDevice) {
            deviceId = _provisionDevice(registry, address(this), nextDevicePk++, seller, true);
            vm.prank(seller);
            registry.approve(address(sales), deviceId);
        }
        vm.prank(seller);
        sales.createOrder(_item("Acme", "Widget", 2024, "S"), price, deadline, deviceId);
        ++ghostCreated;
        if (withDevice) ++ghostCreatedWithDevice;
    }

    function _buy(uint256 orderId, address buyer, uint256 value) internal returns (bool ok) {
        vm.deal(buyer, buyer.balance + value);
        vm.prank(buyer);
        try sales.buy{value: value}(orderId) {
            ok = true;
            ++ghostBought;
        } catch {
            vm.deal(buyer, buyer.balance - value);
        }
    }

    function _traderPk(address trader) internal view returns (uint256) {
        for (uint256 i; i < TRADERS; ++i) {
            if (actors[i] == trader) return TRADER_PK + i;
        }
        revert("not a trader");
    }

    /// @dev Someone who is neither `buyer` nor `seller`: another trader or the gate owner.
    function _someoneElse(uint256 seed, address buyer, address seller) internal view returns (address who) {
        uint256 n = actors.length;
        for (uint256 i; i < n; ++i) {
            who = actors[(seed + i) % n];
            if (who != buyer && who != seller) return who;
        }
        revert("no one else");
    }

    function _pickPaidDevice(uint256 seed) internal view returns (uint256) {
        uint256 n = sales.lastOrderId();
        for (uint256 i; i < n; ++i) {
            uint256 orderId = (seed % n + i) % n + 1;
            ISalesOrder.OrderView memory o = sales.getOrder(orderId);
            if (o.status == ISalesOrder.OrderStatus.Paid && o.deviceId != 0) return orderId;
        }
        return 0;
    }

    function _pickWithDeadline(uint256 seed) internal view returns (uint256) {
        uint256 n = sales.lastOrderId();
        for (uint256 i; i < n; ++i) {
            uint256 orderId = (seed % n + i) % n + 1;
            ISalesOrder.OrderView memory o = sales.getOrder(orderId);
            if (o.status == ISalesOrder.OrderStatus.Paid && o.pickupDeadline != 0) return orderId;
        }
        return 0;
    }

    /// @dev The first order in `status` (and still buyable, when asked) from a seed-chosen start, or 0.
    function _pick(uint256 seed, ISalesOrder.OrderStatus status, bool buyable) internal view returns (uint256) {
        uint256 n = sales.lastOrderId();
        uint256 start = seed % n;
        for (uint256 i; i < n; ++i) {
            uint256 orderId = (start + i) % n + 1;
            ISalesOrder.OrderView memory o = sales.getOrder(orderId);
            if (o.status != status) continue;
            // a listed order past its pickup deadline can no longer be bought: skip it when buying
            if (buyable && o.pickupDeadline != 0 && block.timestamp > o.pickupDeadline) continue;
            return orderId;
        }
        return 0;
    }
}

/// @notice Invariant (c): the money in SalesOrder is exactly the credits (sellers' proceeds, buyers' refunds
/// given by sellers) plus the escrow of paid orders, nobody withdraws more than it was credited, and device
/// tokens sit where the order status says: in escrow while Listed or Paid, with the buyer once Released,
/// with the seller once Cancelled or Refunded.
contract SalesOrderInvariantTest is StdInvariant, Test {
    DeviceRegistry internal registry;
    SalesOrder internal sales;
    SalesHandler internal handler;

    function setUp() public {
        vm.warp(1_750_000_000);
        address admin = makeAddr("admin");
        registry = new DeviceRegistry(admin);
        sales = new SalesOrder(IDeviceRegistry(address(registry)), admin);
        handler = new SalesHandler(registry, sales);
        bytes32 role = registry.MANUFACTURER_ROLE();
        vm.prank(admin);
        registry.grantRole(role, address(handler));
        handler.init();

        bytes4[] memory selectors = new bytes4[](9);
        selectors[0] = SalesHandler.createOrder.selector;
        selectors[1] = SalesHandler.buy.selector;
        selectors[2] = SalesHandler.release.selector;
        selectors[3] = SalesHandler.refund.selector;
        selectors[4] = SalesHandler.cancel.selector;
        selectors[5] = SalesHandler.withdraw.selector;
        selectors[6] = SalesHandler.warp.selector;
        selectors[7] = SalesHandler.buy.selector; // buying twice as likely: more paid orders to settle
        selectors[8] = SalesHandler.takeOverDevice.selector;
        targetSelector(FuzzSelector({addr: address(handler), selectors: selectors}));
        targetContract(address(handler));
    }

    function invariant_BalanceIsCreditsPlusEscrow() public view {
        uint256 credits;
        uint256 n = handler.actorCount();
        for (uint256 i; i < n; ++i) {
            credits += sales.creditOf(handler.actors(i));
        }
        uint256 escrow;
        uint256 last = sales.lastOrderId();
        for (uint256 id = 1; id <= last; ++id) {
            ISalesOrder.OrderView memory o = sales.getOrder(id);
            if (o.status == ISalesOrder.OrderStatus.Paid) escrow += o.price;
        }
        assertEq(address(sales).balance, credits + escrow, "balance != credits + escrow of paid orders");
        assertGe(address(sales).balance, credits, "credits not covered");
    }

    function invariant_NobodyWithdrewMoreThanCredited() public view {
        uint256 n = handler.actorCount();
        for (uint256 i; i < n; ++i) {
            address a = handler.actors(i);
            uint256 credited = handler.ghostCredited(a);
            uint256 withdrawn = handler.ghostWithdrawn(a);
            assertLe(withdrawn, credited, "withdrew more than credited");
            assertEq(sales.creditOf(a), credited - withdrawn, "credit != (released + refunded by sellers) - withdrawn");
        }
    }

    /// @dev Only the handler's releases with the buyer's genuine consent went through.
    function invariant_EveryReleaseHadTheBuyersConsent() public view {
        uint256 released;
        uint256 last = sales.lastOrderId();
        for (uint256 id = 1; id <= last; ++id) {
            if (sales.getOrder(id).status == ISalesOrder.OrderStatus.Released) ++released;
        }
        assertEq(released, handler.ghostReleased(), "released orders != releases with the buyer's consent");
    }

    function invariant_NoViolation() public view {
        assertEq(handler.ghostViolations(), 0);
    }

    /// @dev A listed or paid device sits in SalesOrder (a buyer who may still be refunded never holds it); a
    /// released one with its buyer; a cancelled or refunded one with its seller.
    function invariant_DeviceCustodyFollowsStatus() public view {
        uint256 last = sales.lastOrderId();
        uint256 escrowed;
        for (uint256 id = 1; id <= last; ++id) {
            ISalesOrder.OrderView memory o = sales.getOrder(id);
            if (o.deviceId == 0) continue;
            address holder = registry.ownerOf(o.deviceId);
            if (o.status == ISalesOrder.OrderStatus.Listed || o.status == ISalesOrder.OrderStatus.Paid) {
                assertEq(holder, address(sales), "listed/paid: in escrow");
                ++escrowed;
            } else if (o.status == ISalesOrder.OrderStatus.Released) {
                assertEq(holder, o.buyer, "released: the buyer's");
            } else {
                assertEq(holder, o.seller, "cancelled/refunded: back with the seller");
            }
            // whoever holds it, the device is never bricked by the sale (no one decommissions in this run)
            assertTrue(registry.getDevice(o.deviceId).state == IDeviceRegistry.DeviceState.Active, "device not Active");
        }
        assertEq(registry.balanceOf(address(sales)), escrowed, "escrow holds exactly the listed and paid devices");
    }

    function afterInvariant() public view {
        console.log("created", handler.ghostCreated(), "with device", handler.ghostCreatedWithDevice());
        console.log("bought", handler.ghostBought(), "wrong payments refused", handler.ghostWrongPaymentRefused());
        console.log("released", handler.ghostReleased(), "unauthorized refused", handler.ghostUnauthorizedReleaseRefused());
        console.log("forged consents refused", handler.ghostForgedConsentRefused());
        console.log("refunded", handler.ghostRefunded(), "by sellers", handler.ghostSellerRefunds());
        console.log("early buyer refunds refused", handler.ghostEarlyBuyerRefundRefused());
        console.log("strangers' refunds refused", handler.ghostStrangerRefundRefused());
        console.log("device takeovers refused", handler.ghostTakeoversRefused(), "cancelled", handler.ghostCancelled());
        console.log("withdrawals", handler.ghostWithdrawals());
        if (handler.ghostCalls() >= 32) {
            assertGt(handler.ghostBought(), 0, "nothing bought");
            assertGt(handler.ghostReleased() + handler.ghostRefunded(), 0, "nothing released or refunded");
        }
    }
}
