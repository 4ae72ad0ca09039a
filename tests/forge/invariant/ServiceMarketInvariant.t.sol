// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Test, console} from "forge-std/Test.sol";
import {StdUtils} from "forge-std/StdUtils.sol";
import {StdInvariant} from "forge-std/StdInvariant.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {DeviceRegistry} from "../../../contracts/DeviceRegistry.sol";
import {ServiceMarket} from "../../../contracts/ServiceMarket.sol";
import {IDeviceRegistry} from "../../../interfaces/IDeviceRegistry.sol";
import {IPullPayments} from "../../../interfaces/IPullPayments.sol";
import {IServiceMarket} from "../../../interfaces/IServiceMarket.sol";
import {ThingledgerSigning} from "../utils/ThingledgerTest.sol";

/// @notice Two supplier owners with up to ten supplier devices (keys known: the devices sign their actions
/// for relayers half of the time), three demanders, an attester, two fee recipients and a stranger drive one
/// ServiceMarket with two service types. The handler publishes (sometimes with a foreign hint, sometimes
/// replacing the device's offer with its own id as hint), changes prices, withdraws, posts requests with any
/// policy (sometimes an unknown policy or a wrong deposit), matches, raises maxima, declines (the payee, the
/// device's signature, or a stranger; a declining device is never matched with that request again), confirms, attests (sometimes forged), refunds (after warping past the
/// deadline, or too early), cancels, prunes, withdraws credits, sets fees, pauses, suspends / resumes /
/// decommissions / transfers supplier devices, pokes settled requests, and lets time pass.
///
/// The ghost model is written from the NatSpec: money in (deposits and top-ups), money out (cancel and refund
/// payments, withdrawals), each account's credit, each request's status, matches, declines, maximum and
/// agreement, each offer's units, price-list entry order, device and type. Each action checks the outcome
/// it must have (success, or exactly the first failing check's error); anything else counts as a violation.
contract MarketHandler is ThingledgerSigning, StdUtils {
    uint256 internal constant PRICE_UNIT = 1e12;
    uint256 internal constant ATTESTER_PK = 0xA77E57;
    uint256 internal constant MAX_DEVICES = 10;
    uint256 internal constant BPS = 10_000;
    bytes32 public constant T = keccak256("repair");
    bytes32 public constant U = keccak256("charging");

    DeviceRegistry public immutable registry;
    ServiceMarket public immutable market;
    address public immutable admin;
    address public immutable attester = vm.addr(ATTESTER_PK);
    address public immutable stranger = address(uint160(uint256(keccak256("market stranger"))));

    address[] public owners; // supplier owners
    address[] public demanders;
    address[] public feeRecipients;
    address[] public accounts; // everyone who may hold a credit or call
    uint256[] public devices; // every supplier device provisioned (decommissioned ones stay)
    mapping(uint256 deviceId => uint256) internal devicePk;
    uint256 internal nextPk = 0x5D0001;

    // ---------------------------------------------------------------- money
    uint256 public ghostDeposited; // postRequest deposits and raiseMaxUnitPrice top-ups
    uint256 public ghostPaidOut; // sent at once by cancelRequest and refund
    uint256 public ghostWithdrawn;
    uint256 public ghostEscrow; // what Open and Matched requests hold
    uint256 public ghostToSuppliers; // credited to payees at completion
    uint256 public ghostToFees; // credited to fee recipients at completion
    uint256 public ghostToDemanders; // credited to demanders at match (max - price) * units
    mapping(address => uint256) public ghostCredit;
    uint256 public ghostFeeBps;
    address public ghostFeeRecipient;
    bool public ghostPaused;

    // ---------------------------------------------------------------- requests
    mapping(uint256 requestId => IServiceMarket.RequestStatus) public ghostStatus;
    mapping(uint256 requestId => uint256) public ghostMatches;
    mapping(uint256 requestId => uint256) public ghostDeclines;
    mapping(uint256 requestId => uint256) public ghostMax; // the maximum while Open
    mapping(uint256 requestId => uint256) public ghostUnitsOf;
    mapping(uint256 requestId => address) public ghostDemander;
    mapping(uint256 requestId => address) public ghostAttester;
    mapping(uint256 requestId => uint256) public ghostDeadline;
    mapping(uint256 requestId => bytes32) public ghostTypeOf;
    // the current agreement
    mapping(uint256 requestId => uint256) public ghostOfferOf;
    mapping(uint256 requestId => uint256) public ghostPriceOf;
    mapping(uint256 requestId => uint256) public ghostRateOf;
    mapping(uint256 requestId => address) public ghostPayee;
    mapping(uint256 requestId => mapping(uint256 deviceId => bool)) public ghostDeclinedBy;
    uint256 public ghostRequests;

    // ---------------------------------------------------------------- offers
    mapping(uint256 offerId => uint256) public ghostUnits; // 0: not listed
    mapping(uint256 offerId => uint256) public ghostPrice;
    mapping(uint256 offerId => uint256) public ghostSeq; // when it entered the price list
    mapping(uint256 offerId => uint256) public ghostDevice;
    mapping(uint256 offerId => bytes32) public ghostType;
    mapping(uint256 offerId => uint256) public ghostValidUntil;
    mapping(uint256 offerId => uint256) internal ghostTransfersAtPublish;
    mapping(uint256 deviceId => uint256) internal ghostTransfers;
    uint256 internal seqCounter;
    uint256 public ghostOffers;

    // ---------------------------------------------------------------- outcomes
    uint256 public ghostViolations;
    string public firstViolation;
    uint256 public ghostCalls;
    uint256 public ghostPublished;
    uint256 public ghostReplaced;
    uint256 public ghostPosted;
    uint256 public ghostMatched;
    uint256 public ghostDeclined;
    uint256 public ghostCompleted;
    uint256 public ghostAttested;
    uint256 public ghostForgeriesRefused;
    uint256 public ghostRefunded;
    uint256 public ghostCancelled;
    uint256 public ghostPruned;
    uint256 public ghostWithdrawals;
    uint256 public ghostRefusals; // actions refused with exactly the expected error
    uint256 public ghostSettledPokesRefused;

    modifier counted() {
        ++ghostCalls;
        _;
    }

    constructor(DeviceRegistry registry_, ServiceMarket market_, address admin_) {
        registry = registry_;
        market = market_;
        admin = admin_;
    }

    function init() external {
        for (uint256 i; i < 2; ++i) {
            owners.push(address(uint160(uint256(keccak256(abi.encode("supplier owner", i))))));
            feeRecipients.push(address(uint160(uint256(keccak256(abi.encode("fee recipient", i))))));
        }
        for (uint256 i; i < 3; ++i) {
            demanders.push(address(uint160(uint256(keccak256(abi.encode("demander", i))))));
        }
        for (uint256 i; i < 2; ++i) accounts.push(owners[i]);
        for (uint256 i; i < 3; ++i) accounts.push(demanders[i]);
        for (uint256 i; i < 2; ++i) accounts.push(feeRecipients[i]);
        accounts.push(admin);
        accounts.push(attester);
        accounts.push(stranger);
        for (uint256 i; i < 6; ++i) {
            _newDevice(owners[i % 2]);
        }
        ghostFeeRecipient = admin;
        _setFee(feeRecipients[0], 250);
        // a few offers and requests, so that every run starts with something to match and settle
        for (uint256 i; i < 6; ++i) {
            // flags 2: the exact hint, the owner's call
            _publish(devices[i], _offerTerms(i % 3 == 2 ? U : T, (1 + i * 3) * PRICE_UNIT, 3, block.timestamp + 10 days), 2, false);
        }
        for (uint256 i; i < 3; ++i) {
            _post(demanders[i], _requestTerms(i == 1 ? U : T, i, 1 + i, 15 * PRICE_UNIT, block.timestamp + 1 days, attester), 1);
        }
    }

    // ================================================================ supplier actions

    function publish(uint256 devSeed, uint256 typeSeed, uint256 priceSeed, uint256 unitsSeed, uint256 lifeSeed, uint256 flags)
        external
        counted
    {
        uint256 dev = devices[devSeed % devices.length];
        bytes32 st = typeSeed % 2 == 0 ? T : U;
        uint256 validUntil = block.timestamp + _bound(lifeSeed, 1 hours, 30 days);
        _publish(dev, _offerTerms(st, _bound(priceSeed, 1, 20) * PRICE_UNIT, _bound(unitsSeed, 1, 5), validUntil), _h(flags), true);
    }

    function updatePrice(uint256 offerSeed, uint256 priceSeed, uint256 flags) external counted {
        flags = _h(flags);
        uint256 id = _pickListed(offerSeed);
        if (id == 0) return;
        uint256 price = _bound(priceSeed, 1, 20) * PRICE_UNIT;
        uint256 dev = ghostDevice[id];
        uint256 hint;
        if (flags % 3 == 0) (hint,) = market.findPriceHint(ghostType[id], price, 0, type(uint256).max);
        else if (flags % 3 == 1) hint = id; // its own place
        // else 0: the cheapest end (ten offers per type at most: near enough)
        (address caller, IServiceMarket.DeviceAuth memory auth, bytes memory expected) =
            _supplierAuth(dev, _updateOfferPriceAction(id, price), flags >> 8);
        vm.prank(caller);
        try market.updateOfferPrice(id, price, hint, auth) {
            if (expected.length != 0) _violation("updateOfferPrice succeeded where it must fail");
            ghostPrice[id] = price;
            ghostSeq[id] = ++seqCounter;
        } catch (bytes memory reason) {
            _expectRefusal(reason, expected, "updateOfferPrice");
        }
    }

    function withdrawOffer(uint256 offerSeed, uint256 flags) external counted {
        flags = _h(flags);
        uint256 id = _pickListed(offerSeed);
        if (id == 0) return;
        uint256 dev = ghostDevice[id];
        (address caller, IServiceMarket.DeviceAuth memory auth, bytes memory expected) =
            _supplierAuth(dev, _withdrawOfferAction(id), flags);
        vm.prank(caller);
        try market.withdrawOffer(id, auth) {
            if (expected.length != 0) _violation("withdrawOffer succeeded where it must fail");
            _unlisted(id);
        } catch (bytes memory reason) {
            _expectRefusal(reason, expected, "withdrawOffer");
        }
    }

    function decline(uint256 requestSeed, uint256 flags) external counted {
        uint256 r = _pickRequest(requestSeed, IServiceMarket.RequestStatus.Matched);
        if (r == 0) return;
        uint256 o = ghostOfferOf[r];
        uint256 dev = ghostDevice[o];
        uint256 mode = _h(flags) % 4;
        address caller = mode < 2 ? ghostPayee[r] : stranger;
        IServiceMarket.DeviceAuth memory auth = _ownerAuth();
        bytes memory expected;
        if (block.timestamp > ghostDeadline[r]) {
            expected = abi.encodeWithSelector(IServiceMarket.RequestExpired.selector, r, ghostDeadline[r]);
        }
        if (mode == 3) {
            auth = _deviceAuth(registry, market, devicePk[dev], dev, _declineAgreementAction(r, ghostMatches[r]));
            IDeviceRegistry.DeviceState state = registry.getDevice(dev).state;
            if (expected.length == 0 && state != IDeviceRegistry.DeviceState.Active) {
                expected = abi.encodeWithSelector(IDeviceRegistry.DeviceNotActive.selector, dev, state);
            }
        } else if (mode == 2 && expected.length == 0) {
            expected = abi.encodeWithSelector(IServiceMarket.NotPayee.selector, r, stranger);
        }
        vm.prank(caller);
        try market.declineAgreement(r, auth) {
            if (expected.length != 0) _violation("declineAgreement succeeded where it must fail");
            ++ghostDeclines[r];
            ++ghostDeclined;
            ghostDeclinedBy[r][dev] = true;
            ghostStatus[r] = IServiceMarket.RequestStatus.Open;
            ghostMax[r] = ghostPriceOf[r];
            if (ghostUnits[o] != 0) _unlisted(o); // the declining offer leaves
            ghostOfferOf[r] = 0;
            ghostPayee[r] = address(0);
        } catch (bytes memory reason) {
            _expectRefusal(reason, expected, "declineAgreement");
        }
    }

    // ================================================================ demander actions

    function postRequest(
        uint256 demanderSeed,
        uint256 typeSeed,
        uint256 policySeed,
        uint256 unitsSeed,
        uint256 maxSeed,
        uint256 deadlineSeed,
        uint256 flags
    ) external counted {
        flags = _h(flags);
        uint256 policy = _h(policySeed) % 16 == 0 ? 3 + policySeed % 253 : policySeed % 3;
        IServiceMarket.RequestTerms memory terms = _requestTerms(
            typeSeed % 2 == 0 ? T : U,
            policy,
            _bound(unitsSeed, 1, 6),
            _bound(maxSeed, 1, 20) * PRICE_UNIT,
            block.timestamp + _bound(deadlineSeed, 10 minutes, 3 days),
            flags % 3 == 0 ? address(0) : attester
        );
        _post(demanders[demanderSeed % demanders.length], terms, flags >> 8);
    }

    function matchRequest(uint256 requestSeed) external counted {
        uint256 r = _pickRequest(requestSeed, IServiceMarket.RequestStatus.Open);
        if (r == 0) return;
        bytes memory expected;
        if (ghostPaused) expected = abi.encodeWithSelector(Pausable.EnforcedPause.selector);
        else if (block.timestamp > ghostDeadline[r]) {
            expected = abi.encodeWithSelector(IServiceMarket.RequestExpired.selector, r, ghostDeadline[r]);
        }
        try market.matchRequest(r) returns (uint256 o) {
            if (expected.length != 0) _violation("matchRequest succeeded where it must fail");
            _afterWalk(r, o, ghostMax[r]);
        } catch (bytes memory reason) {
            _expectRefusal(reason, expected, "matchRequest");
        }
    }

    function raiseMax(uint256 requestSeed, uint256 addSeed, uint256 flags) external counted {
        uint256 r = _pickRequest(requestSeed, IServiceMarket.RequestStatus.Open);
        if (r == 0) return;
        uint256 oldMax = ghostMax[r];
        uint256 newMax = oldMax + _bound(addSeed, 0, 5) * PRICE_UNIT;
        uint256 added = (newMax - oldMax) * ghostUnitsOf[r];
        address caller = _h(flags) % 5 == 0 ? stranger : ghostDemander[r];
        bytes memory expected;
        if (ghostPaused) {
            expected = abi.encodeWithSelector(Pausable.EnforcedPause.selector);
        } else if (caller != ghostDemander[r]) {
            expected = abi.encodeWithSelector(IServiceMarket.NotDemander.selector, r, caller);
        } else if (block.timestamp > ghostDeadline[r]) {
            expected = abi.encodeWithSelector(IServiceMarket.RequestExpired.selector, r, ghostDeadline[r]);
        } else if (newMax <= oldMax) {
            expected = abi.encodeWithSelector(IServiceMarket.MaxNotRaised.selector, oldMax, newMax);
        }
        vm.deal(caller, caller.balance + added);
        vm.prank(caller);
        try market.raiseMaxUnitPrice{value: added}(r, newMax) returns (uint256 o) {
            if (expected.length != 0) _violation("raiseMaxUnitPrice succeeded where it must fail");
            ghostDeposited += added;
            ghostEscrow += added;
            ghostMax[r] = newMax;
            _afterWalk(r, o, newMax);
        } catch (bytes memory reason) {
            vm.deal(caller, caller.balance - added);
            _expectRefusal(reason, expected, "raiseMaxUnitPrice");
        }
    }

    function confirm(uint256 requestSeed, bytes32 evidence, uint256 flags) external counted {
        uint256 r = _pickRequest(requestSeed, IServiceMarket.RequestStatus.Matched);
        if (r == 0) return;
        address caller = _h(flags) % 5 == 0 ? stranger : ghostDemander[r];
        bytes memory expected;
        if (block.timestamp > ghostDeadline[r]) {
            expected = abi.encodeWithSelector(IServiceMarket.RequestExpired.selector, r, ghostDeadline[r]);
        } else if (caller != ghostDemander[r]) {
            expected = abi.encodeWithSelector(IServiceMarket.NotDemander.selector, r, caller);
        }
        vm.prank(caller);
        try market.confirmCompletion(r, evidence) {
            if (expected.length != 0) _violation("confirmCompletion succeeded where it must fail");
            _completed(r);
        } catch (bytes memory reason) {
            _expectRefusal(reason, expected, "confirmCompletion");
        }
    }

    /// @dev The attester's Completion statement, forged one time in three: another round, other evidence,
    /// malleated, or signed by someone else. Anyone submits it.
    function attest(uint256 requestSeed, bytes32 evidence, uint256 forgeSeed) external counted {
        uint256 r = _pickRequest(requestSeed, IServiceMarket.RequestStatus.Matched);
        if (r == 0) return;
        uint256 forgery = uint256(keccak256(abi.encode(forgeSeed, "forgery"))) % 12;
        uint256 round = ghostMatches[r] + (forgery == 0 ? 1 : 0);
        bytes32 signed = forgery == 1 ? ~evidence : evidence;
        uint256 pk = forgery == 3 ? _pk(forgeSeed) : ATTESTER_PK;
        if (pk == ATTESTER_PK && forgery == 3) pk = ATTESTER_PK + 1;
        bytes memory sig =
            _signCompletionWith(pk, address(market), block.chainid, r, ghostOfferOf[r], round, signed);
        if (forgery == 2) sig = _malleate(sig);
        bytes memory expected;
        if (block.timestamp > ghostDeadline[r]) {
            expected = abi.encodeWithSelector(IServiceMarket.RequestExpired.selector, r, ghostDeadline[r]);
        } else if (ghostAttester[r] == address(0)) {
            expected = abi.encodeWithSelector(IServiceMarket.NoAttester.selector, r);
        } else if (forgery < 4) {
            expected = abi.encodeWithSelector(IServiceMarket.InvalidAttestation.selector, r);
        }
        vm.prank(accounts[forgeSeed % accounts.length]);
        try market.completeWithAttestation(r, evidence, sig) {
            if (expected.length != 0) _violation("completeWithAttestation succeeded where it must fail");
            _completed(r);
            ++ghostAttested;
        } catch (bytes memory reason) {
            _expectRefusal(reason, expected, "completeWithAttestation");
            if (forgery < 4 && keccak256(reason) == keccak256(expected)) ++ghostForgeriesRefused;
        }
    }

    /// @dev The demander (or, one time in five, a stranger) takes the escrow back, after warping past the
    /// deadline when asked to, else possibly too early.
    function refund(uint256 requestSeed, bool warpPastDeadline, uint256 flags) external counted {
        uint256 r = _pickRequest(requestSeed, IServiceMarket.RequestStatus.Matched);
        if (r == 0) return;
        uint256 deadline = ghostDeadline[r];
        if (warpPastDeadline && block.timestamp <= deadline) vm.warp(deadline + 1);
        address demander = ghostDemander[r];
        address caller = _h(flags) % 5 == 0 ? stranger : demander;
        bytes memory expected;
        if (caller != demander) expected = abi.encodeWithSelector(IServiceMarket.NotDemander.selector, r, caller);
        else if (block.timestamp <= deadline) {
            expected = abi.encodeWithSelector(IServiceMarket.DeadlineNotReached.selector, r, deadline);
        }
        uint256 amount = ghostPriceOf[r] * ghostUnitsOf[r];
        uint256 before = demander.balance;
        vm.prank(caller);
        try market.refund(r) {
            if (expected.length != 0) _violation("refund succeeded where it must fail");
            if (demander.balance != before + amount) _violation("refund paid another amount than the escrow");
            ghostPaidOut += amount;
            ghostEscrow -= amount;
            ghostStatus[r] = IServiceMarket.RequestStatus.Refunded;
            ++ghostRefunded;
        } catch (bytes memory reason) {
            _expectRefusal(reason, expected, "refund");
        }
    }

    function cancel(uint256 requestSeed, uint256 flags) external counted {
        uint256 r = _pickRequest(requestSeed, IServiceMarket.RequestStatus.Open);
        if (r == 0) return;
        address demander = ghostDemander[r];
        address caller = _h(flags) % 5 == 0 ? stranger : demander;
        bytes memory expected;
        if (caller != demander) expected = abi.encodeWithSelector(IServiceMarket.NotDemander.selector, r, caller);
        uint256 amount = ghostMax[r] * ghostUnitsOf[r];
        uint256 before = demander.balance;
        vm.prank(caller);
        try market.cancelRequest(r) {
            if (expected.length != 0) _violation("cancelRequest succeeded where it must fail");
            if (demander.balance != before + amount) _violation("cancel paid another amount than the escrow");
            ghostPaidOut += amount;
            ghostEscrow -= amount;
            ghostStatus[r] = IServiceMarket.RequestStatus.Cancelled;
            ++ghostCancelled;
        } catch (bytes memory reason) {
            _expectRefusal(reason, expected, "cancelRequest");
        }
    }

    /// @dev Every operation on a Completed, Refunded or Cancelled request is refused with WrongRequestStatus.
    function pokeSettled(uint256 requestSeed, uint256 which) external counted {
        uint256 r = _pickSettled(requestSeed);
        if (r == 0) return;
        IServiceMarket.RequestStatus status = ghostStatus[r];
        address demander = ghostDemander[r];
        bytes memory data;
        which = which % 6;
        if (which == 0) data = abi.encodeCall(IServiceMarket.cancelRequest, (r));
        else if (which == 1) data = abi.encodeCall(IServiceMarket.refund, (r));
        else if (which == 2) data = abi.encodeCall(IServiceMarket.confirmCompletion, (r, bytes32(0)));
        else if (which == 3) data = abi.encodeCall(IServiceMarket.declineAgreement, (r, _ownerAuth()));
        else if (which == 4) data = abi.encodeCall(IServiceMarket.matchRequest, (r));
        else data = abi.encodeCall(IServiceMarket.raiseMaxUnitPrice, (r, ghostMax[r] + PRICE_UNIT));
        if (which == 3) demander = ghostPayee[r] == address(0) ? owners[0] : ghostPayee[r];
        if (ghostPaused && which >= 4) return; // the pause would answer first
        vm.prank(demander);
        (bool ok, bytes memory reason) = address(market).call(data);
        bytes memory expected = abi.encodeWithSelector(IServiceMarket.WrongRequestStatus.selector, r, status);
        if (ok) _violation("an operation on a settled request succeeded");
        else if (keccak256(reason) != keccak256(expected)) _violation("settled request: unexpected error");
        else ++ghostSettledPokesRefused;
    }

    // ================================================================ anyone

    function prune(uint256 a, uint256 b, uint256 c) external counted {
        uint256 last = market.lastOfferId();
        uint256[] memory ids = new uint256[](3);
        ids[0] = a % (last + 2);
        ids[1] = b % (last + 2);
        ids[2] = c % (last + 2);
        uint256 expected;
        for (uint256 i; i < 3; ++i) {
            bool seen = (i > 0 && ids[i] == ids[0]) || (i > 1 && ids[i] == ids[1]);
            if (!seen && ghostUnits[ids[i]] != 0 && _dead(ids[i])) ++expected;
        }
        vm.prank(stranger);
        uint256 pruned = market.pruneOffers(ids);
        if (pruned != expected) _violation("pruneOffers count != dead listed offers given");
        ghostPruned += pruned;
        _reconcile(0);
    }

    function withdraw(uint256 accountSeed) external counted {
        address account = accounts[accountSeed % accounts.length];
        uint256 credit = ghostCredit[account];
        uint256 before = account.balance;
        vm.prank(account);
        try market.withdraw() {
            if (credit == 0) _violation("withdraw of nothing succeeded");
            if (account.balance - before != credit) _violation("withdraw paid another amount than the credit");
            ghostWithdrawn += credit;
            ghostCredit[account] = 0;
            ++ghostWithdrawals;
        } catch (bytes memory reason) {
            _expectRefusal(reason, abi.encodeWithSelector(IPullPayments.NothingToWithdraw.selector, account), "withdraw");
            if (credit != 0) _violation("withdraw refused with a credit");
        }
    }

    // ================================================================ admin, devices, time

    function setFee(uint256 recipientSeed, uint256 bpsSeed) external counted {
        address recipient = feeRecipients[recipientSeed % feeRecipients.length];
        uint256 bps = _bound(bpsSeed, 0, 1_200);
        vm.prank(admin);
        try market.setFee(recipient, bps) {
            if (bps > 1_000) _violation("setFee above MAX_FEE_BPS succeeded");
            ghostFeeBps = bps;
            ghostFeeRecipient = recipient;
        } catch (bytes memory reason) {
            _expectRefusal(reason, abi.encodeWithSelector(IServiceMarket.FeeTooHigh.selector, bps, 1_000), "setFee");
        }
    }

    function togglePause(uint256 seed) external counted {
        bool pause = _h(seed) % 5 == 0; // paused about a fifth of the time
        if (pause == ghostPaused) return;
        vm.prank(admin);
        if (pause) market.pause();
        else market.unpause();
        ghostPaused = pause;
    }

    function deviceOp(uint256 devSeed, uint256 op) external counted {
        uint256 dev = devices[devSeed % devices.length];
        address owner = registry.ownerOf(dev);
        IDeviceRegistry.DeviceState state = registry.getDevice(dev).state;
        bool decommissioned = state == IDeviceRegistry.DeviceState.Decommissioned;
        uint256 kind = op % 8;
        vm.startPrank(owner);
        if (kind < 3 && state == IDeviceRegistry.DeviceState.Active) {
            registry.suspend(dev);
        } else if (kind < 3 && state == IDeviceRegistry.DeviceState.Suspended) {
            registry.resume(dev);
        } else if (kind == 3 && !decommissioned && _h(op) % 3 == 0) {
            registry.decommission(dev);
        } else if ((kind == 4 || kind == 5) && !decommissioned) {
            registry.transferFrom(owner, owner == owners[0] ? owners[1] : owners[0], dev);
            ++ghostTransfers[dev];
        } else if (state == IDeviceRegistry.DeviceState.Suspended) {
            registry.resume(dev);
        }
        vm.stopPrank();
        if (registry.getDevice(dev).state == IDeviceRegistry.DeviceState.Decommissioned && !decommissioned) {
            if (devices.length < MAX_DEVICES) _newDevice(owners[op % 2]);
        }
    }

    function warp(uint256 secondsAhead) external counted {
        vm.warp(block.timestamp + _bound(secondsAhead, 0, 1 days));
    }

    // ================================================================ views for the invariants

    function deviceCount() external view returns (uint256) {
        return devices.length;
    }

    function accountCount() external view returns (uint256) {
        return accounts.length;
    }

    // ================================================================ internals

    function _newDevice(address owner) internal returns (uint256 dev) {
        uint256 pk = nextPk++;
        dev = _provisionDevice(registry, address(this), pk, owner, true);
        devicePk[dev] = pk;
        devices.push(dev);
    }

    /// @dev Who calls a supplier action and with what auth, and the error it must meet: the owner's call
    /// (mode 0, 1), the device's signature relayed by anyone (mode 2: refused by the registry unless Active),
    /// or a stranger's own call (mode 3: NotDeviceOwner).
    function _supplierAuth(uint256 dev, bytes32 action, uint256 seed)
        internal
        view
        returns (address caller, IServiceMarket.DeviceAuth memory auth, bytes memory expected)
    {
        uint256 mode = seed % 4;
        caller = registry.ownerOf(dev);
        auth = _ownerAuth();
        if (mode == 2) {
            caller = accounts[(seed >> 2) % accounts.length];
            auth = _deviceAuth(registry, market, devicePk[dev], dev, action);
            IDeviceRegistry.DeviceState state = registry.getDevice(dev).state;
            if (state != IDeviceRegistry.DeviceState.Active) {
                expected = abi.encodeWithSelector(IDeviceRegistry.DeviceNotActive.selector, dev, state);
            }
        } else if (mode == 3) {
            caller = stranger;
            expected = abi.encodeWithSelector(IServiceMarket.NotDeviceOwner.selector, dev, stranger);
        }
    }

    function _publish(uint256 dev, IServiceMarket.OfferTerms memory terms, uint256 flags, bool checked) internal {
        uint256 replaced = market.listedOfferOf(dev, terms.serviceType);
        if (replaced != 0 && ghostUnits[replaced] == 0) _violation("listedOfferOf names an unlisted offer");
        (uint256 hint, address caller, IServiceMarket.DeviceAuth memory auth, bytes memory expected) =
            _publishPlan(dev, terms, replaced, flags);
        vm.prank(caller);
        try market.publishOffer(dev, terms, hint, auth) returns (uint256 id) {
            if (expected.length != 0) _violation("publishOffer succeeded where it must fail");
            if (replaced != 0) {
                if (market.getOffer(replaced).units != 0) _violation("replaced offer still listed");
                _unlisted(replaced);
                ++ghostReplaced;
            }
            ghostUnits[id] = terms.units;
            ghostPrice[id] = terms.unitPrice;
            ghostSeq[id] = ++seqCounter;
            ghostDevice[id] = dev;
            ghostType[id] = terms.serviceType;
            ghostValidUntil[id] = terms.validUntil;
            ghostTransfersAtPublish[id] = ghostTransfers[dev];
            ghostOffers = id;
            ++ghostPublished;
        } catch (bytes memory reason) {
            if (checked) _expectRefusal(reason, expected, "publishOffer");
        }
    }

    /// @dev The hint (one time in eight a listed offer of the other type; one time in eight, when the device
    /// has a listed offer of the type, that offer's id: its former place; else the exact place), the caller
    /// and auth, and the error publishOffer must meet: paused, then SupplierNotActive, then BadPriceHint,
    /// then the auth's.
    function _publishPlan(uint256 dev, IServiceMarket.OfferTerms memory terms, uint256 replaced, uint256 flags)
        internal
        view
        returns (uint256 hint, address caller, IServiceMarket.DeviceAuth memory auth, bytes memory expected)
    {
        bytes32 st = terms.serviceType;
        uint256 foreign = _pickListedOfType(flags, st == T ? U : T);
        if (flags % 8 == 0 && foreign != 0) {
            hint = foreign;
            expected = abi.encodeWithSelector(IServiceMarket.BadPriceHint.selector, hint);
        } else if (flags % 8 == 1 && replaced != 0) {
            hint = replaced;
        } else {
            (hint,) = market.findPriceHint(st, terms.unitPrice, 0, type(uint256).max);
        }
        bytes memory authError;
        (caller, auth, authError) = _supplierAuth(dev, _publishOfferAction(terms), flags >> 8);
        if (registry.getDevice(dev).state != IDeviceRegistry.DeviceState.Active) {
            expected = abi.encodeWithSelector(IServiceMarket.SupplierNotActive.selector, dev);
        } else if (expected.length == 0) {
            expected = authError;
        }
        if (ghostPaused) expected = abi.encodeWithSelector(Pausable.EnforcedPause.selector);
    }

    function _offerTerms(bytes32 st, uint256 price, uint256 units, uint256 validUntil)
        internal
        pure
        returns (IServiceMarket.OfferTerms memory)
    {
        return IServiceMarket.OfferTerms(st, price, units, validUntil, "ipfs://o");
    }

    function _requestTerms(bytes32 st, uint256 policy, uint256 units, uint256 maxPrice, uint256 deadline, address att)
        internal
        pure
        returns (IServiceMarket.RequestTerms memory)
    {
        return IServiceMarket.RequestTerms({
            serviceType: st,
            units: units,
            maxUnitPrice: maxPrice,
            deadline: deadline,
            policy: uint8(policy),
            attester: att
        });
    }

    /// @dev Posts with the exact deposit, or one time in eight a wei more or less.
    function _post(address demander, IServiceMarket.RequestTerms memory terms, uint256 flags) internal {
        uint256 deposit = terms.maxUnitPrice * terms.units;
        uint256 value = flags % 8 == 0 ? (flags % 16 == 0 ? deposit + 1 : deposit - 1) : deposit;
        bytes memory expected;
        if (ghostPaused) expected = abi.encodeWithSelector(Pausable.EnforcedPause.selector);
        else if (terms.policy > 2) expected = abi.encodeWithSelector(IServiceMarket.UnknownPolicy.selector, terms.policy);
        else if (value != deposit) expected = abi.encodeWithSelector(IServiceMarket.WrongDeposit.selector, deposit, value);
        vm.deal(demander, demander.balance + value);
        vm.prank(demander);
        try market.postRequest{value: value}(terms) returns (uint256 r, uint256 o) {
            if (expected.length != 0) _violation("postRequest succeeded where it must fail");
            if (r != ghostRequests + 1) _violation("request ids not consecutive");
            ghostRequests = r;
            ghostDeposited += value;
            ghostEscrow += value;
            ghostStatus[r] = IServiceMarket.RequestStatus.Open;
            ghostMax[r] = terms.maxUnitPrice;
            ghostUnitsOf[r] = terms.units;
            ghostDemander[r] = demander;
            ghostAttester[r] = terms.attester;
            ghostDeadline[r] = terms.deadline;
            ghostTypeOf[r] = terms.serviceType;
            ++ghostPosted;
            _afterWalk(r, o, terms.maxUnitPrice);
        } catch (bytes memory reason) {
            vm.deal(demander, demander.balance - value);
            _expectRefusal(reason, expected, "postRequest");
        }
    }

    /// @dev After a matching walk of request `r` that returned `o` with maximum `maxPrice`: the offers it
    /// removed must have been dead; the offer taken must have been listed, of the type, alive, at or below
    /// the maximum, with enough units; the demander is credited the difference.
    function _afterWalk(uint256 r, uint256 o, uint256 maxPrice) internal {
        _reconcile(o);
        if (o == 0) return;
        uint256 units = ghostUnitsOf[r];
        uint256 price = ghostPrice[o];
        if (ghostUnits[o] < units) _violation("matched an offer without enough units (or not listed)");
        if (ghostType[o] != ghostTypeOf[r]) _violation("matched an offer of another type");
        if (price > maxPrice) _violation("matched an offer above the maximum");
        if (_dead(o)) _violation("matched a dead offer");
        if (ghostDeclinedBy[r][ghostDevice[o]]) _violation("matched an offer of a device that declined the request");
        ++ghostMatches[r];
        ++ghostMatched;
        ghostStatus[r] = IServiceMarket.RequestStatus.Matched;
        ghostOfferOf[r] = o;
        ghostPriceOf[r] = price;
        ghostRateOf[r] = ghostFeeBps;
        ghostPayee[r] = registry.ownerOf(ghostDevice[o]);
        uint256 refunded = (maxPrice - price) * units;
        ghostCredit[ghostDemander[r]] += refunded;
        ghostToDemanders += refunded;
        ghostEscrow -= refunded;
        ghostUnits[o] -= units;
        IServiceMarket.Request memory req = market.getRequest(r);
        if (req.payee != ghostPayee[r] || req.unitPrice != price || req.feeBps != ghostFeeBps || req.offerId != o) {
            _violation("agreement stored differs from the model");
        }
    }

    /// @dev Offers the model lists but the contract no longer does (other than `taken`, which may have sold
    /// out): they must be dead, and they leave the model.
    function _reconcile(uint256 taken) internal {
        uint256 last = market.lastOfferId();
        for (uint256 id = 1; id <= last; ++id) {
            if (id == taken || ghostUnits[id] == 0 || market.getOffer(id).units != 0) continue;
            if (!_dead(id)) _violation("a live offer left the lists");
            _unlisted(id);
        }
    }

    function _completed(uint256 r) internal {
        uint256 amount = ghostPriceOf[r] * ghostUnitsOf[r];
        uint256 fee = amount * ghostRateOf[r] / BPS;
        ghostCredit[ghostPayee[r]] += amount - fee;
        ghostCredit[ghostFeeRecipient] += fee;
        ghostToSuppliers += amount - fee;
        ghostToFees += fee;
        ghostEscrow -= amount;
        ghostStatus[r] = IServiceMarket.RequestStatus.Completed;
        ++ghostCompleted;
    }

    function _setFee(address recipient, uint256 bps) internal {
        vm.prank(admin);
        market.setFee(recipient, bps);
        ghostFeeBps = bps;
        ghostFeeRecipient = recipient;
    }

    /// @dev A seed hashed: the fuzzer's favourite values (0, small numbers, powers of two) must not all pick
    /// the same mode.
    function _h(uint256 seed) internal pure returns (uint256) {
        return uint256(keccak256(abi.encode(seed, "mode")));
    }

    function _unlisted(uint256 id) internal {
        ghostUnits[id] = 0;
    }

    /// @dev Dead per the NatSpec: expired, supplier device not Active, or transferred since publication.
    function _dead(uint256 id) internal view returns (bool) {
        if (block.timestamp > ghostValidUntil[id]) return true;
        if (registry.getDevice(ghostDevice[id]).state != IDeviceRegistry.DeviceState.Active) return true;
        return ghostTransfers[ghostDevice[id]] != ghostTransfersAtPublish[id];
    }

    function _expectRefusal(bytes memory reason, bytes memory expected, string memory what) internal {
        if (expected.length == 0) {
            _violation(string.concat(what, " failed where it must succeed"));
            console.logBytes(reason);
        } else if (keccak256(reason) != keccak256(expected)) {
            _violation(string.concat(what, " failed with another error than the first failing check's"));
            console.logBytes(reason);
        } else {
            ++ghostRefusals;
        }
    }

    function _violation(string memory why) internal {
        if (ghostViolations == 0) firstViolation = why;
        ++ghostViolations;
    }

    function _pickListed(uint256 seed) internal view returns (uint256) {
        uint256 n = ghostOffers;
        if (n == 0) return 0;
        for (uint256 i; i < n; ++i) {
            uint256 id = (seed % n + i) % n + 1;
            if (ghostUnits[id] != 0) return id;
        }
        return 0;
    }

    function _pickListedOfType(uint256 seed, bytes32 st) internal view returns (uint256) {
        uint256 n = ghostOffers;
        for (uint256 i; i < n; ++i) {
            uint256 id = (seed % n + i) % n + 1;
            if (ghostUnits[id] != 0 && ghostType[id] == st) return id;
        }
        return 0;
    }

    function _pickRequest(uint256 seed, IServiceMarket.RequestStatus status) internal view returns (uint256) {
        uint256 n = ghostRequests;
        for (uint256 i; i < n; ++i) {
            uint256 r = (seed % n + i) % n + 1;
            if (ghostStatus[r] == status) return r;
        }
        return 0;
    }

    function _pickSettled(uint256 seed) internal view returns (uint256) {
        uint256 n = ghostRequests;
        for (uint256 i; i < n; ++i) {
            uint256 r = (seed % n + i) % n + 1;
            if (uint8(ghostStatus[r]) >= uint8(IServiceMarket.RequestStatus.Completed)) return r;
        }
        return 0;
    }
}

/// @notice Invariants of ServiceMarket under MarketHandler: escrow equals what is owed, every request is
/// matched at most once at a time and settled requests never move, payments never exceed deposits, and both
/// lists of both service types stay sorted, linked and counted.
contract ServiceMarketInvariantTest is StdInvariant, ThingledgerSigning, Test {
    DeviceRegistry internal registry;
    ServiceMarket internal market;
    MarketHandler internal handler;

    function setUp() public {
        vm.warp(1_750_000_000);
        address admin = makeAddr("admin");
        registry = new DeviceRegistry(admin);
        market = new ServiceMarket(IDeviceRegistry(address(registry)), admin);
        handler = new MarketHandler(registry, market, admin);
        bytes32 role = registry.MANUFACTURER_ROLE();
        vm.prank(admin);
        registry.grantRole(role, address(handler));
        handler.init();

        bytes4[] memory selectors = new bytes4[](22);
        selectors[0] = MarketHandler.publish.selector;
        selectors[1] = MarketHandler.publish.selector; // supply twice as likely
        selectors[2] = MarketHandler.updatePrice.selector;
        selectors[3] = MarketHandler.withdrawOffer.selector;
        selectors[4] = MarketHandler.decline.selector;
        selectors[5] = MarketHandler.postRequest.selector;
        selectors[6] = MarketHandler.postRequest.selector; // demand twice as likely
        selectors[7] = MarketHandler.matchRequest.selector;
        selectors[8] = MarketHandler.raiseMax.selector;
        selectors[9] = MarketHandler.confirm.selector;
        selectors[10] = MarketHandler.attest.selector;
        selectors[11] = MarketHandler.refund.selector;
        selectors[12] = MarketHandler.cancel.selector;
        selectors[13] = MarketHandler.pokeSettled.selector;
        selectors[14] = MarketHandler.prune.selector;
        selectors[15] = MarketHandler.withdraw.selector;
        selectors[16] = MarketHandler.withdraw.selector;
        selectors[17] = MarketHandler.setFee.selector;
        selectors[18] = MarketHandler.togglePause.selector;
        selectors[19] = MarketHandler.deviceOp.selector;
        selectors[20] = MarketHandler.warp.selector;
        selectors[21] = MarketHandler.confirm.selector;
        targetSelector(FuzzSelector({addr: address(handler), selectors: selectors}));
        targetContract(address(handler));
    }

    /// @dev The market's balance is exactly the escrow of Open and Matched requests plus every credit; the
    /// ghost books agree (money in = escrow + credits + money out), and each account's credit is the model's.
    function invariant_EscrowEqualsWhatIsOwed() public view {
        uint256 escrow;
        uint256 last = market.lastRequestId();
        for (uint256 r = 1; r <= last; ++r) {
            IServiceMarket.Request memory req = market.getRequest(r);
            if (req.status == IServiceMarket.RequestStatus.Open || req.status == IServiceMarket.RequestStatus.Matched) {
                escrow += uint256(req.unitPrice) * req.units;
            }
        }
        uint256 credits;
        uint256 ghostCredits;
        uint256 n = handler.accountCount();
        for (uint256 i; i < n; ++i) {
            address a = handler.accounts(i);
            credits += market.creditOf(a);
            ghostCredits += handler.ghostCredit(a);
            assertEq(market.creditOf(a), handler.ghostCredit(a), "credit != model");
        }
        assertEq(address(market).balance, escrow + credits, "balance != escrow of Open/Matched + credits");
        assertEq(escrow, handler.ghostEscrow(), "escrow != model");
        assertEq(
            handler.ghostDeposited(),
            handler.ghostEscrow() + ghostCredits + handler.ghostWithdrawn() + handler.ghostPaidOut(),
            "money in != escrow + credits + money out"
        );
    }

    /// @dev Credited to suppliers and fee recipients never exceeds the deposits; nor does what left.
    function invariant_PaymentsNeverExceedDeposits() public view {
        uint256 deposited = handler.ghostDeposited();
        assertLe(handler.ghostToSuppliers() + handler.ghostToFees(), deposited, "paid to suppliers and fees > deposits");
        assertLe(handler.ghostWithdrawn() + handler.ghostPaidOut(), deposited, "money out > deposits");
        assertLe(
            handler.ghostToSuppliers() + handler.ghostToFees() + handler.ghostToDemanders() + handler.ghostPaidOut(),
            deposited,
            "everything credited or paid > deposits"
        );
        assertLe(handler.ghostToFees() * 10_000, (handler.ghostToSuppliers() + handler.ghostToFees()) * 1_000, "fees > 10%");
    }

    /// @dev matches - declines is 0 or 1, and 1 exactly while Matched (or once that agreement was completed or
    /// refunded); the round counts the matches; the status
    /// is the model's (so a settled request never moved: the handler never settles one twice); an Open
    /// request's maximum and a Matched one's agreement are the model's.
    function invariant_RequestsMatchedAtMostOnceAtATime() public view {
        uint256 last = market.lastRequestId();
        assertEq(last, handler.ghostRequests(), "request count");
        for (uint256 r = 1; r <= last; ++r) {
            IServiceMarket.Request memory req = market.getRequest(r);
            uint256 m = handler.ghostMatches(r);
            uint256 d = handler.ghostDeclines(r);
            assertTrue(m == d || m == d + 1, "matches - declines not in {0, 1}");
            // 1 while Matched, and after settling an agreement (Completed, Refunded); 0 while Open or Cancelled
            bool agreed = req.status == IServiceMarket.RequestStatus.Matched
                || req.status == IServiceMarket.RequestStatus.Completed || req.status == IServiceMarket.RequestStatus.Refunded;
            assertEq(m == d + 1, agreed, "one undeclined match iff Matched, Completed or Refunded");
            assertEq(req.round, m, "round != matches");
            assertEq(uint8(req.status), uint8(handler.ghostStatus(r)), "status != model");
            if (req.status == IServiceMarket.RequestStatus.Open) {
                assertEq(req.unitPrice, handler.ghostMax(r), "Open: maximum != model");
                assertEq(req.offerId, 0);
                assertEq(req.payee, address(0));
            } else if (req.status == IServiceMarket.RequestStatus.Matched) {
                uint256 dev = market.getOffer(req.offerId).deviceId;
                assertFalse(market.hasDeclined(r, dev), "Matched with a device that declined it");
                assertEq(market.hasDeclined(r, dev), handler.ghostDeclinedBy(r, dev));
                assertEq(req.offerId, handler.ghostOfferOf(r), "Matched: offer != model");
                assertEq(req.unitPrice, handler.ghostPriceOf(r), "Matched: price != model");
                assertEq(req.payee, handler.ghostPayee(r), "Matched: payee != model");
            }
        }
    }

    /// @dev For both types: lists linked both ways, ends and count right, sorted by price with ties in the
    /// order they entered the price list; every offer's units are the model's; a device has at most one
    /// listed offer per type and listedOfferOf names it.
    function invariant_ListsIntact() public view {
        bytes32[2] memory types = [handler.T(), handler.U()];
        for (uint256 t; t < 2; ++t) {
            assertEq(_listViolation(market, types[t]), "", "list integrity");
            (uint256[] memory ids,) = market.listOffers(types[t], IServiceMarket.MatchingPolicy.LowestPrice, 0, 1_000);
            for (uint256 i = 1; i < ids.length; ++i) {
                if (market.getOffer(ids[i]).unitPrice == market.getOffer(ids[i - 1]).unitPrice) {
                    assertLt(handler.ghostSeq(ids[i - 1]), handler.ghostSeq(ids[i]), "equal prices out of entry order");
                }
            }
        }
        uint256 last = market.lastOfferId();
        for (uint256 id = 1; id <= last; ++id) {
            IServiceMarket.Offer memory o = market.getOffer(id);
            assertEq(o.units, handler.ghostUnits(id), "offer units != model");
            if (o.units != 0) {
                assertEq(market.listedOfferOf(o.deviceId, o.serviceType), id, "listedOfferOf != the listed offer");
                assertEq(o.unitPrice, handler.ghostPrice(id), "offer price != model");
            }
        }
        uint256 n = handler.deviceCount();
        for (uint256 i; i < n; ++i) {
            uint256 dev = handler.devices(i);
            for (uint256 t; t < 2; ++t) {
                uint256 id = market.listedOfferOf(dev, types[t]);
                if (id == 0) continue;
                IServiceMarket.Offer memory o = market.getOffer(id);
                assertTrue(o.units != 0 && o.deviceId == dev && o.serviceType == types[t], "listedOfferOf stale");
            }
        }
    }

    function invariant_NoViolation() public view {
        if (handler.ghostViolations() != 0) console.log("first violation:", handler.firstViolation());
        assertEq(handler.ghostViolations(), 0);
    }

    function afterInvariant() public view {
        console.log("calls", handler.ghostCalls(), "refusals as expected", handler.ghostRefusals());
        console.log("published", handler.ghostPublished(), "replaced", handler.ghostReplaced());
        console.log("posted", handler.ghostPosted(), "matched", handler.ghostMatched());
        console.log("declined", handler.ghostDeclined(), "completed", handler.ghostCompleted());
        console.log("attested", handler.ghostAttested(), "forgeries refused", handler.ghostForgeriesRefused());
        console.log("refunded", handler.ghostRefunded(), "cancelled", handler.ghostCancelled());
        console.log("pruned", handler.ghostPruned(), "withdrawals", handler.ghostWithdrawals());
        console.log("settled pokes refused", handler.ghostSettledPokesRefused());
        if (handler.ghostCalls() >= 48) assertGt(handler.ghostMatched(), 0, "nothing matched");
    }
}
