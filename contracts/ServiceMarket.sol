// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {IDeviceRegistry} from "../interfaces/IDeviceRegistry.sol";
import {IServiceMarket} from "../interfaces/IServiceMarket.sol";
import {SignatureVerifier} from "./libraries/SignatureVerifier.sol";
import {PullPayments} from "./PullPayments.sol";

/// @title ServiceMarket
/// @notice Devices offer services and buy them from each other: offers by supplier devices of DeviceRegistry,
/// requests with their fee in escrow, matching by a policy chosen per request at a gas cost that does not
/// grow with the market, completion confirmed by the demander or a named attester, pull payments.
/// @dev See IServiceMarket for the matching policies, the request state machine and the money flows.
/// Offers are three storage slots, requests four, a service type's list ends one. No loop runs over more
/// than `MAX_MATCH_STEPS` or `MAX_HINT_STEPS` offers. Pausing stops new offers, requests and matches; money
/// can always leave and agreements can always be completed, declined or refunded.
contract ServiceMarket is IServiceMarket, AccessControl, Pausable, PullPayments, EIP712 {
    /// @notice Role that may pause and unpause new offers, requests and matches.
    bytes32 public constant PAUSER_ROLE = keccak256("PAUSER_ROLE");
    /// @notice The most offers one matching walk looks at.
    uint256 public constant MAX_MATCH_STEPS = 16;
    /// @notice The most offers placing a price steps over from its hint.
    uint256 public constant MAX_HINT_STEPS = 32;
    /// @notice The highest protocol fee, in basis points of an agreement's amount (10%).
    uint256 public constant MAX_FEE_BPS = 1_000;
    /// @notice The longest an offer stays valid after it is published.
    uint256 public constant MAX_OFFER_LIFETIME = 30 days;

    bytes32 private constant COMPLETION_TYPEHASH =
        keccak256("Completion(uint256 requestId,uint256 offerId,uint256 round,bytes32 evidence)");
    bytes32 private constant PUBLISH_OFFER_TYPEHASH = keccak256(
        "PublishOffer(bytes32 serviceType,uint256 unitPrice,uint256 units,uint256 validUntil,string metadataURI)"
    );
    bytes32 private constant UPDATE_OFFER_PRICE_TYPEHASH = keccak256("UpdateOfferPrice(uint256 offerId,uint256 unitPrice)");
    bytes32 private constant WITHDRAW_OFFER_TYPEHASH = keccak256("WithdrawOffer(uint256 offerId)");
    bytes32 private constant DECLINE_AGREEMENT_TYPEHASH =
        keccak256("DeclineAgreement(uint256 requestId,uint256 round)");

    /// @dev Whether a listed offer is alive (`Takeable` as far as the offer itself goes) or why it is dead;
    /// the dead values follow PruneReason's order.
    enum Health {
        Takeable,
        Expired,
        SupplierNotActive,
        SupplierOwnerChanged
    }

    /// @notice The device registry whose devices supply services.
    IDeviceRegistry public immutable registry;

    mapping(uint256 offerId => Offer) private _offers;
    mapping(uint256 requestId => Request) private _requests;
    mapping(bytes32 serviceType => Market) private _markets;
    mapping(uint256 deviceId => mapping(bytes32 serviceType => uint40 offerId)) private _listedOffers;
    mapping(uint256 requestId => mapping(uint256 deviceId => bool)) private _declinedBy;
    /// @notice Who receives the protocol fee; never the zero address.
    address public feeRecipient;
    /// @notice The protocol fee in basis points, fixed into each agreement when it is matched.
    uint16 public feeBps;
    uint40 private _lastOfferId;
    uint64 private _lastRequestId;

    /// @param registry_ The DeviceRegistry.
    /// @param admin Receives DEFAULT_ADMIN_ROLE (sets the fee) and PAUSER_ROLE, and is the first fee recipient
    /// (the fee starts at zero).
    constructor(IDeviceRegistry registry_, address admin) EIP712("thingledger ServiceMarket", "1") {
        if (address(registry_) == address(0) || admin == address(0)) revert ZeroAddress();
        registry = registry_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(PAUSER_ROLE, admin);
        feeRecipient = admin;
    }

    // ------------------------------------------------------------------ supplier

    /// @inheritdoc IServiceMarket
    function publishOffer(uint256 deviceId, OfferTerms calldata terms, uint256 priceHint, DeviceAuth calldata auth)
        external
        whenNotPaused
        returns (uint256 offerId)
    {
        IDeviceRegistry.Device memory device = registry.getDevice(deviceId);
        if (device.state != IDeviceRegistry.DeviceState.Active) revert SupplierNotActive(deviceId);
        if (auth.signature.length != 0) {
            // The owner at publication is the payee of every match (the epoch pins it). A device signs on
            // its own, so it may offer only for an owner that can take the money out: an account, not a
            // contract such as an escrow holding the device's token. Contract owners publish themselves.
            address owner = registry.ownerOf(deviceId);
            if (owner.code.length != 0) revert OwnerMustPublish(deviceId, owner);
        }
        offerId = ++_lastOfferId;
        if (priceHint == offerId) revert BadPriceHint(priceHint);
        uint256 start = priceHint;
        uint40 replaced = _listedOffers[deviceId][terms.serviceType];
        if (replaced != 0) {
            // One listed offer per device and service type: the new one replaces it.
            Offer storage old = _offers[replaced];
            if (priceHint == replaced) start = old.cheaper;
            _unlink(_markets[terms.serviceType], old);
            emit OfferWithdrawn(replaced, terms.serviceType, deviceId);
        }
        _storeOffer(uint40(offerId), deviceId, device.epoch, terms);
        _insertByPrice(
            _markets[terms.serviceType], terms.serviceType, uint40(offerId), terms.unitPrice, start, priceHint
        );
        emit OfferPublished(
            offerId, terms.serviceType, deviceId, terms.unitPrice, terms.units, terms.validUntil, terms.metadataURI
        );
        _authorize(deviceId, _publishOfferActionHash(terms), auth);
    }

    /// @inheritdoc IServiceMarket
    function updateOfferPrice(uint256 offerId, uint256 unitPrice, uint256 priceHint, DeviceAuth calldata auth)
        external
    {
        uint96 newPrice = _unitPrice(unitPrice);
        Offer storage offer = _listedOffer(offerId);
        bytes32 serviceType = offer.serviceType;
        Market storage market = _markets[serviceType];
        uint40 formerCheaper = offer.cheaper;
        _unlinkByPrice(market, offer);
        offer.unitPrice = newPrice;
        uint256 start = priceHint == offerId ? formerCheaper : priceHint;
        _insertByPrice(market, serviceType, uint40(offerId), newPrice, start, priceHint);
        emit OfferPriceUpdated(offerId, serviceType, newPrice);
        _authorize(offer.deviceId, _updateOfferPriceActionHash(offerId, unitPrice), auth);
    }

    /// @inheritdoc IServiceMarket
    function withdrawOffer(uint256 offerId, DeviceAuth calldata auth) external {
        Offer storage offer = _listedOffer(offerId);
        uint256 deviceId = offer.deviceId;
        bytes32 serviceType = offer.serviceType;
        _unlink(_markets[serviceType], offer);
        emit OfferWithdrawn(offerId, serviceType, deviceId);
        _authorize(deviceId, _withdrawOfferActionHash(offerId), auth);
    }

    /// @inheritdoc IServiceMarket
    function declineAgreement(uint256 requestId, DeviceAuth calldata auth) external {
        Request storage request = _requests[requestId];
        _requireLiveAgreement(requestId, request);
        uint256 offerId = request.offerId;
        uint256 round = request.round;
        address payee = request.payee;
        Offer storage offer = _offers[offerId];
        uint256 deviceId = offer.deviceId;
        request.status = RequestStatus.Open;
        request.payee = address(0);
        request.offerId = 0;
        request.feeBps = 0;
        _declinedBy[requestId][deviceId] = true;
        emit AgreementDeclined(requestId, offerId, deviceId, round);
        if (offer.units != 0) {
            // A supplier that declines leaves the market until it publishes again.
            bytes32 serviceType = offer.serviceType;
            _unlink(_markets[serviceType], offer);
            emit OfferWithdrawn(offerId, serviceType, deviceId);
        }
        if (auth.signature.length == 0) {
            // The agreement's payee declines it, even if the device changed hands since.
            if (msg.sender != payee) revert NotPayee(requestId, msg.sender);
        } else {
            registry.useDeviceAction(deviceId, _declineAgreementActionHash(requestId, round), auth.deadline, auth.signature);
        }
    }

    // ------------------------------------------------------------------ demander

    /// @inheritdoc IServiceMarket
    function postRequest(RequestTerms calldata terms)
        external
        payable
        whenNotPaused
        returns (uint256 requestId, uint256 offerId)
    {
        requestId = ++_lastRequestId;
        Request storage request = _requests[requestId];
        _storeRequest(request, terms);
        emit RequestPosted(
            requestId,
            terms.serviceType,
            msg.sender,
            request.policy,
            request.units,
            request.unitPrice,
            request.deadline,
            terms.attester
        );
        offerId = _match(requestId, request);
    }

    /// @inheritdoc IServiceMarket
    function raiseMaxUnitPrice(uint256 requestId, uint256 maxUnitPrice)
        external
        payable
        whenNotPaused
        returns (uint256 offerId)
    {
        uint96 newMax = _unitPrice(maxUnitPrice);
        Request storage request = _requests[requestId];
        _requireStatus(requestId, request.status, RequestStatus.Open);
        if (request.demander != msg.sender) revert NotDemander(requestId, msg.sender);
        uint256 deadline = request.deadline;
        if (block.timestamp > deadline) revert RequestExpired(requestId, deadline);
        uint96 oldMax = request.unitPrice;
        if (newMax <= oldMax) revert MaxNotRaised(oldMax, newMax);
        uint256 added = uint256(newMax - oldMax) * request.units;
        if (msg.value != added) revert WrongDeposit(added, msg.value);
        request.unitPrice = newMax;
        emit RequestMaxRaised(requestId, newMax, added);
        offerId = _match(requestId, request);
    }

    /// @inheritdoc IServiceMarket
    function cancelRequest(uint256 requestId) external nonReentrant {
        Request storage request = _requests[requestId];
        _requireStatus(requestId, request.status, RequestStatus.Open);
        if (request.demander != msg.sender) revert NotDemander(requestId, msg.sender);
        uint256 amount = _escrowOf(request);
        request.status = RequestStatus.Cancelled;
        emit RequestCancelled(requestId, msg.sender, amount);
        // Money only ever leaves to the caller, after every state change.
        Address.sendValue(payable(msg.sender), amount);
    }

    /// @inheritdoc IServiceMarket
    function confirmCompletion(uint256 requestId, bytes32 evidence) external {
        Request storage request = _requests[requestId];
        _requireLiveAgreement(requestId, request);
        if (request.demander != msg.sender) revert NotDemander(requestId, msg.sender);
        _complete(requestId, request, msg.sender, evidence);
    }

    /// @inheritdoc IServiceMarket
    function completeWithAttestation(uint256 requestId, bytes32 evidence, bytes calldata signature) external {
        Request storage request = _requests[requestId];
        _requireLiveAgreement(requestId, request);
        address attester = request.attester;
        if (attester == address(0)) revert NoAttester(requestId);
        bytes32 digest = _completionDigest(requestId, request.offerId, request.round, evidence);
        if (!SignatureVerifier.isValidNow(attester, digest, signature)) revert InvalidAttestation(requestId);
        _complete(requestId, request, attester, evidence);
    }

    /// @inheritdoc IServiceMarket
    function refund(uint256 requestId) external nonReentrant {
        Request storage request = _requests[requestId];
        _requireStatus(requestId, request.status, RequestStatus.Matched);
        if (request.demander != msg.sender) revert NotDemander(requestId, msg.sender);
        uint256 deadline = request.deadline;
        if (block.timestamp <= deadline) revert DeadlineNotReached(requestId, deadline);
        uint256 amount = _escrowOf(request);
        request.status = RequestStatus.Refunded;
        emit RequestRefunded(requestId, msg.sender, amount);
        // Money only ever leaves to the caller, after every state change.
        Address.sendValue(payable(msg.sender), amount);
    }

    // ------------------------------------------------------------------ anyone

    /// @inheritdoc IServiceMarket
    function matchRequest(uint256 requestId) external whenNotPaused returns (uint256 offerId) {
        Request storage request = _requests[requestId];
        _requireStatus(requestId, request.status, RequestStatus.Open);
        uint256 deadline = request.deadline;
        if (block.timestamp > deadline) revert RequestExpired(requestId, deadline);
        offerId = _match(requestId, request);
    }

    /// @inheritdoc IServiceMarket
    function pruneOffers(uint256[] calldata offerIds) external returns (uint256 pruned) {
        for (uint256 i; i < offerIds.length; ++i) {
            uint256 offerId = offerIds[i];
            Offer storage offer = _offers[offerId];
            if (offer.units == 0) continue;
            Health health = _health(offer);
            if (health == Health.Takeable) continue;
            _prune(offerId, offer, health);
            ++pruned;
        }
    }

    // ------------------------------------------------------------------ admin

    /// @notice Sets the protocol fee for agreements matched from now on. Agreements already matched keep
    /// the fee they were matched with.
    /// @param recipient Who is credited the fee from now on, including the fee of agreements already matched.
    /// @param feeBps_ The fee in basis points, at most `MAX_FEE_BPS`.
    function setFee(address recipient, uint256 feeBps_) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (feeBps_ > MAX_FEE_BPS) revert FeeTooHigh(feeBps_, MAX_FEE_BPS);
        if (recipient == address(0)) revert ZeroAddress();
        feeRecipient = recipient;
        feeBps = uint16(feeBps_);
        emit FeeConfigured(recipient, feeBps_);
    }

    /// @notice Stops new offers, requests and matches. Everything else keeps working.
    function pause() external onlyRole(PAUSER_ROLE) {
        _pause();
    }

    /// @notice Lifts `pause`.
    function unpause() external onlyRole(PAUSER_ROLE) {
        _unpause();
    }

    // ------------------------------------------------------------------ views

    /// @inheritdoc IServiceMarket
    function getOffer(uint256 offerId) external view returns (Offer memory) {
        return _offers[offerId];
    }

    /// @inheritdoc IServiceMarket
    function getRequest(uint256 requestId) external view returns (Request memory) {
        return _requests[requestId];
    }

    /// @inheritdoc IServiceMarket
    function marketOf(bytes32 serviceType) external view returns (Market memory) {
        return _markets[serviceType];
    }

    /// @inheritdoc IServiceMarket
    function previewMatch(uint256 requestId) external view returns (uint256 offerId, uint256 steps) {
        Request storage request = _requests[requestId];
        _requireStatus(requestId, request.status, RequestStatus.Open);
        uint256 deadline = request.deadline;
        if (block.timestamp > deadline) revert RequestExpired(requestId, deadline);
        (offerId,,, steps) = _walk(requestId, request);
    }

    /// @inheritdoc IServiceMarket
    function listOffers(bytes32 serviceType, MatchingPolicy order, uint256 cursor, uint256 limit)
        external
        view
        returns (uint256[] memory offerIds, uint256 next)
    {
        Market storage market = _markets[serviceType];
        uint40 current;
        if (cursor == 0) {
            current = _startOf(market, order);
        } else {
            current = uint40(cursor);
            if (cursor != current || _offers[current].units == 0 || _offers[current].serviceType != serviceType) {
                revert OfferNotListed(cursor);
            }
        }
        // Never more than what is listed, so a large `limit` is no error.
        uint256 listed = market.listed;
        offerIds = new uint256[](limit < listed ? limit : listed);
        uint256 count;
        while (current != 0 && count < offerIds.length) {
            offerIds[count++] = current;
            current = _nextOf(_offers[current], order);
        }
        // Trim the array to what was found.
        assembly ("memory-safe") {
            mstore(offerIds, count)
        }
        next = current;
    }

    /// @inheritdoc IServiceMarket
    function findPriceHint(bytes32 serviceType, uint256 unitPrice, uint256 start, uint256 maxSteps)
        external
        view
        returns (uint256 hint, bool found)
    {
        (uint40 cheaper,, bool placed) = _findPriceSlot(_markets[serviceType], serviceType, unitPrice, start, maxSteps);
        return (cheaper, placed);
    }

    /// @inheritdoc IServiceMarket
    function listedOfferOf(uint256 deviceId, bytes32 serviceType) external view returns (uint256) {
        return _listedOffers[deviceId][serviceType];
    }

    /// @inheritdoc IServiceMarket
    function hasDeclined(uint256 requestId, uint256 deviceId) external view returns (bool) {
        return _declinedBy[requestId][deviceId];
    }

    /// @inheritdoc IServiceMarket
    function completionDigest(uint256 requestId, uint256 offerId, uint256 round, bytes32 evidence)
        external
        view
        returns (bytes32)
    {
        return _completionDigest(requestId, offerId, round, evidence);
    }

    /// @notice The EIP-712 domain separator of this contract (chain id and address bound).
    /// @return The domain separator.
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    /// @notice The number of offers ever published.
    /// @return The last offer id, 0 before the first offer.
    function lastOfferId() external view returns (uint256) {
        return _lastOfferId;
    }

    /// @notice The number of requests ever posted.
    /// @return The last request id, 0 before the first request.
    function lastRequestId() external view returns (uint256) {
        return _lastRequestId;
    }

    /// @inheritdoc IServiceMarket
    function publishOfferActionHash(OfferTerms calldata terms) external pure returns (bytes32) {
        return _publishOfferActionHash(terms);
    }

    /// @inheritdoc IServiceMarket
    function updateOfferPriceActionHash(uint256 offerId, uint256 unitPrice) external pure returns (bytes32) {
        return _updateOfferPriceActionHash(offerId, unitPrice);
    }

    /// @inheritdoc IServiceMarket
    function withdrawOfferActionHash(uint256 offerId) external pure returns (bytes32) {
        return _withdrawOfferActionHash(offerId);
    }

    /// @inheritdoc IServiceMarket
    function declineAgreementActionHash(uint256 requestId, uint256 round) external pure returns (bytes32) {
        return _declineAgreementActionHash(requestId, round);
    }

    // ------------------------------------------------------------------ matching

    /// @dev Walks the request's policy list, prunes the dead offers the walk met and, if it found one, makes
    /// the agreement: the price becomes the offer's and the difference is credited to the demander.
    function _match(uint256 requestId, Request storage request) private returns (uint256) {
        (uint40 offerId, uint256[MAX_MATCH_STEPS] memory dead, uint256 deadCount,) = _walk(requestId, request);
        for (uint256 i; i < deadCount; ++i) {
            uint256 packed = dead[i];
            uint256 deadId = uint40(packed);
            _prune(deadId, _offers[deadId], Health(packed >> 40));
        }
        if (offerId == 0) return 0;

        Offer storage offer = _offers[offerId];
        uint256 deviceId = offer.deviceId;
        uint96 unitPrice = offer.unitPrice;
        uint32 units = request.units;
        uint256 refunded = uint256(request.unitPrice - unitPrice) * units;
        address payee = registry.ownerOf(deviceId);
        uint16 round = request.round + 1;
        request.status = RequestStatus.Matched;
        request.unitPrice = unitPrice;
        request.payee = payee;
        request.offerId = offerId;
        request.round = round;
        request.feeBps = feeBps;
        uint32 unitsLeft = offer.units - units;
        if (unitsLeft == 0) _unlink(_markets[request.serviceType], offer);
        else offer.units = unitsLeft;
        if (refunded != 0) _credit(request.demander, refunded);
        emit RequestMatched(requestId, request.serviceType, deviceId, offerId, payee, unitPrice, round, refunded, unitsLeft);
        return offerId;
    }

    /// @dev The matching walk of IServiceMarket, read-only: the offer to take (0 if none), the dead offers met
    /// (each packed as `id | uint256(health) << 40`), and the number of offers looked at.
    function _walk(uint256 requestId, Request storage request)
        private
        view
        returns (uint40 chosen, uint256[MAX_MATCH_STEPS] memory dead, uint256 deadCount, uint256 steps)
    {
        MatchingPolicy policy = request.policy;
        uint96 maxUnitPrice = request.unitPrice;
        uint32 units = request.units;
        uint40 current = _startOf(_markets[request.serviceType], policy);
        while (current != 0 && steps < MAX_MATCH_STEPS) {
            ++steps;
            Offer storage offer = _offers[current];
            Health health = _health(offer);
            if (health != Health.Takeable) {
                dead[deadCount++] = uint256(current) | (uint256(health) << 40);
            } else if (offer.unitPrice > maxUnitPrice) {
                // The price list is sorted: every later offer is dearer still.
                if (policy == MatchingPolicy.LowestPrice) break;
            } else if (offer.units >= units && !_declinedBy[requestId][offer.deviceId]) {
                return (current, dead, deadCount, steps);
            }
            current = _nextOf(offer, policy);
        }
    }

    /// @dev Whether a listed offer is alive (`Takeable`, as far as the offer itself goes) or why it is dead.
    function _health(Offer storage offer) private view returns (Health) {
        if (block.timestamp > offer.validUntil) return Health.Expired;
        IDeviceRegistry.Device memory device = registry.getDevice(offer.deviceId);
        if (device.state != IDeviceRegistry.DeviceState.Active) return Health.SupplierNotActive;
        if (device.epoch != offer.epoch) return Health.SupplierOwnerChanged;
        return Health.Takeable;
    }

    function _prune(uint256 offerId, Offer storage offer, Health health) private {
        bytes32 serviceType = offer.serviceType;
        _unlink(_markets[serviceType], offer);
        emit OfferPruned(offerId, serviceType, PruneReason(uint8(health) - uint8(Health.Expired)));
    }

    function _startOf(Market storage market, MatchingPolicy policy) private view returns (uint40) {
        if (policy == MatchingPolicy.LatestPublished) return market.newest;
        if (policy == MatchingPolicy.LowestPrice) return market.cheapest;
        return market.oldest;
    }

    function _nextOf(Offer storage offer, MatchingPolicy policy) private view returns (uint40) {
        if (policy == MatchingPolicy.LatestPublished) return offer.older;
        if (policy == MatchingPolicy.LowestPrice) return offer.dearer;
        return offer.newer;
    }

    // ------------------------------------------------------------------ lists

    /// @dev Stores a new offer (its terms range-checked) and appends it to the newest end of its type's
    /// publication list.
    function _storeOffer(uint40 offerId, uint256 deviceId, uint24 epoch, OfferTerms calldata terms) private {
        Offer storage offer = _offers[offerId];
        // An Active device's id is derived from an address, so it fits.
        offer.deviceId = uint160(deviceId);
        offer.epoch = epoch;
        offer.validUntil = _validUntil(terms.validUntil);
        offer.units = _units(terms.units);
        offer.unitPrice = _unitPrice(terms.unitPrice);
        offer.serviceType = terms.serviceType;
        Market storage market = _markets[terms.serviceType];
        uint40 newest = market.newest;
        offer.older = newest;
        if (newest == 0) market.oldest = offerId;
        else _offers[newest].newer = offerId;
        market.newest = offerId;
        ++market.listed;
        _listedOffers[deviceId][terms.serviceType] = offerId;
    }

    /// @dev Stores a new request with the caller as demander, its terms range-checked against the deposit sent.
    function _storeRequest(Request storage request, RequestTerms calldata terms) private {
        uint32 units = _units(terms.units);
        uint96 maxUnitPrice = _unitPrice(terms.maxUnitPrice);
        uint40 deadline = _deadline(terms.deadline);
        if (terms.policy > uint8(type(MatchingPolicy).max)) revert UnknownPolicy(terms.policy);
        // At most (2^96 - 1) * (2^32 - 1): no overflow in uint256.
        uint256 deposit = uint256(maxUnitPrice) * units;
        if (msg.value != deposit) revert WrongDeposit(deposit, msg.value);
        request.demander = msg.sender;
        request.policy = MatchingPolicy(terms.policy);
        request.status = RequestStatus.Open;
        request.deadline = deadline;
        request.attester = terms.attester;
        request.unitPrice = maxUnitPrice;
        request.units = units;
        request.serviceType = terms.serviceType;
    }

    /// @dev Links an offer into its type's price list after every offer priced at or below `unitPrice`,
    /// starting the search at `start`, which the caller's `hint` stands for (errors name the `hint`).
    function _insertByPrice(
        Market storage market,
        bytes32 serviceType,
        uint40 offerId,
        uint256 unitPrice,
        uint256 start,
        uint256 hint
    ) private {
        (uint40 cheaper, uint40 dearer, bool placed) =
            _findPriceSlot(market, serviceType, unitPrice, start, MAX_HINT_STEPS);
        if (!placed) revert PriceHintTooFar(hint);
        Offer storage offer = _offers[offerId];
        offer.cheaper = cheaper;
        offer.dearer = dearer;
        if (cheaper == 0) market.cheapest = offerId;
        else _offers[cheaper].dearer = offerId;
        if (dearer == 0) market.dearest = offerId;
        else _offers[dearer].cheaper = offerId;
    }

    /// @dev From `start` (0: before the cheapest), steps over at most `maxSteps` offers to the place where
    /// `unitPrice` belongs: between `cheaper` (priced at or below it) and `dearer` (priced above it).
    function _findPriceSlot(Market storage market, bytes32 serviceType, uint256 unitPrice, uint256 start, uint256 maxSteps)
        private
        view
        returns (uint40 cheaper, uint40 dearer, bool placed)
    {
        cheaper = uint40(start);
        if (start != cheaper) revert BadPriceHint(start);
        if (cheaper != 0 && (_offers[cheaper].units == 0 || _offers[cheaper].serviceType != serviceType)) {
            revert BadPriceHint(start);
        }
        uint256 steps;
        while (cheaper != 0 && _offers[cheaper].unitPrice > unitPrice) {
            if (steps++ == maxSteps) return (cheaper, 0, false);
            cheaper = _offers[cheaper].cheaper;
        }
        dearer = cheaper == 0 ? market.cheapest : _offers[cheaper].dearer;
        while (dearer != 0 && _offers[dearer].unitPrice <= unitPrice) {
            if (steps++ == maxSteps) return (cheaper, dearer, false);
            cheaper = dearer;
            dearer = _offers[dearer].dearer;
        }
        placed = true;
    }

    /// @dev Takes an offer out of both lists and marks it unlisted (no units left).
    function _unlink(Market storage market, Offer storage offer) private {
        uint40 older = offer.older;
        uint40 newer = offer.newer;
        if (older == 0) market.oldest = newer;
        else _offers[older].newer = newer;
        if (newer == 0) market.newest = older;
        else _offers[newer].older = older;
        _unlinkByPrice(market, offer);
        delete _listedOffers[offer.deviceId][offer.serviceType];
        offer.units = 0;
        offer.older = 0;
        offer.newer = 0;
        offer.cheaper = 0;
        offer.dearer = 0;
        --market.listed;
    }

    function _unlinkByPrice(Market storage market, Offer storage offer) private {
        uint40 cheaper = offer.cheaper;
        uint40 dearer = offer.dearer;
        if (cheaper == 0) market.cheapest = dearer;
        else _offers[cheaper].dearer = dearer;
        if (dearer == 0) market.dearest = cheaper;
        else _offers[dearer].cheaper = cheaper;
    }

    // ------------------------------------------------------------------ internals

    function _complete(uint256 requestId, Request storage request, address confirmedBy, bytes32 evidence) private {
        uint256 amount = _escrowOf(request);
        uint256 fee = amount * request.feeBps / 10_000;
        address payee = request.payee;
        request.status = RequestStatus.Completed;
        _credit(payee, amount - fee);
        if (fee != 0) _credit(feeRecipient, fee);
        emit RequestCompleted(requestId, request.offerId, payee, confirmedBy, evidence, amount - fee, fee);
    }

    /// @dev The owner's own call, or the device's signed action verified (and its nonce consumed) by the
    /// registry. Called last: the registry is the only contract called.
    function _authorize(uint256 deviceId, bytes32 action, DeviceAuth calldata auth) private {
        if (auth.signature.length == 0) {
            if (registry.ownerOf(deviceId) != msg.sender) revert NotDeviceOwner(deviceId, msg.sender);
        } else {
            registry.useDeviceAction(deviceId, action, auth.deadline, auth.signature);
        }
    }

    function _listedOffer(uint256 offerId) private view returns (Offer storage offer) {
        offer = _offers[offerId];
        if (offer.units == 0) {
            if (offer.deviceId == 0) revert UnknownOffer(offerId);
            revert OfferNotListed(offerId);
        }
    }

    function _requireStatus(uint256 requestId, RequestStatus actual, RequestStatus expected) private pure {
        if (actual == RequestStatus.None) revert UnknownRequest(requestId);
        if (actual != expected) revert WrongRequestStatus(requestId, actual);
    }

    /// @dev Matched and within its deadline: completion is possible until the deadline, refund only after it.
    function _requireLiveAgreement(uint256 requestId, Request storage request) private view {
        _requireStatus(requestId, request.status, RequestStatus.Matched);
        uint256 deadline = request.deadline;
        if (block.timestamp > deadline) revert RequestExpired(requestId, deadline);
    }

    function _escrowOf(Request storage request) private view returns (uint256) {
        return uint256(request.unitPrice) * request.units;
    }

    function _unitPrice(uint256 value) private pure returns (uint96) {
        if (value == 0) revert ZeroAmount();
        if (value > type(uint96).max) revert AmountOutOfRange(value, type(uint96).max);
        return uint96(value);
    }

    function _units(uint256 value) private pure returns (uint32) {
        if (value == 0) revert ZeroAmount();
        if (value > type(uint32).max) revert AmountOutOfRange(value, type(uint32).max);
        return uint32(value);
    }

    function _deadline(uint256 value) private view returns (uint40) {
        if (value <= block.timestamp) revert TimestampInPast(value);
        if (value > type(uint40).max) revert TimestampTooFar(value, type(uint40).max);
        return uint40(value);
    }

    function _validUntil(uint256 value) private view returns (uint40) {
        if (value <= block.timestamp) revert TimestampInPast(value);
        uint256 latest = block.timestamp + MAX_OFFER_LIFETIME;
        if (value > latest) revert TimestampTooFar(value, latest);
        return uint40(value);
    }

    function _completionDigest(uint256 requestId, uint256 offerId, uint256 round, bytes32 evidence)
        private
        view
        returns (bytes32)
    {
        return _hashTypedDataV4(keccak256(abi.encode(COMPLETION_TYPEHASH, requestId, offerId, round, evidence)));
    }

    function _publishOfferActionHash(OfferTerms calldata terms) private pure returns (bytes32) {
        return keccak256(
            abi.encode(
                PUBLISH_OFFER_TYPEHASH,
                terms.serviceType,
                terms.unitPrice,
                terms.units,
                terms.validUntil,
                keccak256(bytes(terms.metadataURI))
            )
        );
    }

    function _updateOfferPriceActionHash(uint256 offerId, uint256 unitPrice) private pure returns (bytes32) {
        return keccak256(abi.encode(UPDATE_OFFER_PRICE_TYPEHASH, offerId, unitPrice));
    }

    function _withdrawOfferActionHash(uint256 offerId) private pure returns (bytes32) {
        return keccak256(abi.encode(WITHDRAW_OFFER_TYPEHASH, offerId));
    }

    function _declineAgreementActionHash(uint256 requestId, uint256 round) private pure returns (bytes32) {
        return keccak256(abi.encode(DECLINE_AGREEMENT_TYPEHASH, requestId, round));
    }
}
