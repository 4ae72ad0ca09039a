// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IPullPayments} from "./IPullPayments.sol";

/// @title IServiceMarket
/// @notice Service demand and supply between devices (reference document 004, sections 2.2-2.4): supplier
/// devices publish offers of a service type, demanders post requests with the fee deposit in escrow, a
/// matching policy chosen per request picks the offer, and the fee moves to the supplier by contract once
/// the demander or a named attester confirms the work.
///
///  Request:   postRequest()        match            confirmCompletion() / completeWithAttestation()
///           ──────────────> Open ─────────> Matched ─────────────────────────────────────────────> Completed
///                            │    <─────────   │                                  (supplier's credit, withdraw())
///              cancelRequest()   declineAgreement()
///                            v                 └── refund(), after the deadline ──> Refunded
///                        Cancelled      (raiseMaxUnitPrice() while Open)
///
/// Offers of one service type sit in two doubly linked lists: by publication (oldest to newest) and by
/// unit price (cheapest to dearest; equal prices in the order they entered the list, that is publication
/// or the last price change). Each policy walks one list from one end, so matching never depends on how
/// many offers the market holds:
///
/// - `LatestPublished`: from the newest offer towards the oldest (document 004's example).
/// - `LowestPrice`: from the cheapest offer towards the dearest; the walk stops at the first offer priced
///   above the request's maximum, since every later one is dearer still.
/// - `EarliestPublished`: from the oldest offer towards the newest (FIFO).
///
/// The walk looks at no more than `MAX_MATCH_STEPS` offers. On each one, in this order:
///   1. dead: expired (`block.timestamp > validUntil`), its supplier device no longer Active (suspended or
///      decommissioned), or the device changed owner since publication: the offer is removed from the lists
///      (`OfferPruned`) and the walk goes on;
///   2. under `LowestPrice`, priced above the request's maximum: the walk ends without a match;
///   3. alive but not takeable by this request: priced above the request's maximum, fewer units left than
///      requested, or its supplier device declined this request before: skipped, the walk goes on;
///   4. otherwise it is taken: the request is matched with it.
/// A request finds no offer when the walk reaches the end of the list or its step limit first; it then stays
/// Open, keeps whatever pruning the walk did, and anyone may try again with `matchRequest` (once new offers
/// arrived, dead ones were pruned, or the demander raised its maximum). Withdrawn, declining and sold-out
/// offers leave the lists at once, so the walk never sees them.
///
/// What bounds abuse: a device has at most one listed offer per service type (publishing again replaces
/// it), devices exist only through a manufacturer's provisioning, an offer lives at most
/// `MAX_OFFER_LIFETIME`, and a device that declined a request is never matched with it again (a decline
/// lowers the request's maximum to the declined price, so a cheap bait offer declined over and over would
/// otherwise keep a request from every honest offer; one device can still do it once to each request, and
/// the demander then raises its maximum). Still, `MAX_MATCH_STEPS` alive offers that a request cannot take
/// (priced above its maximum, too few units, or from devices that declined it), from as many Active
/// devices, hide the offers behind them from that request until they expire; `LowestPrice` is immune to
/// the price case. A supplier matched with a request may also sit on the agreement: the demander gets its
/// escrow back only after the deadline it chose, so a demander should choose no longer a deadline than it
/// can wait. Under `LatestPublished`, a supplier that
/// sees a request before it is mined can publish an offer at the request's maximum ahead of it, and under
/// the publication policies a supplier may raise its price up to a visible request's maximum: a demander
/// pays at most its maximum, never more.
///
/// Escrow and money: a request deposits `maxUnitPrice * units`; a match fixes the price at the offer's and
/// credits the difference to the demander at once. Completion credits the agreed amount to the supplier's
/// payee (the device's owner at match time) minus the protocol fee, whose rate is fixed at match time and
/// which is credited to the fee recipient of the moment (never the zero address). Every credit is taken out
/// with `withdraw` (pull payments).
interface IServiceMarket is IPullPayments {
    /// @notice The order in which a request looks at the offers of its service type. See the contract
    /// documentation for the exact walk.
    enum MatchingPolicy {
        LatestPublished,
        LowestPrice,
        EarliestPublished
    }

    /// @notice Where a request is. `None` means the id was never posted.
    enum RequestStatus {
        None,
        Open,
        Matched,
        Completed,
        Refunded,
        Cancelled
    }

    /// @notice Why a dead offer left the lists.
    enum PruneReason {
        Expired,
        SupplierNotActive,
        SupplierOwnerChanged
    }

    /// @notice What a supplier offers. Amounts are uint256 here and range-checked with clear errors:
    /// `unitPrice` in 1..2^96-1 wei, `units` in 1..2^32-1, `validUntil` in the future and at most
    /// `MAX_OFFER_LIFETIME` away.
    /// `metadataURI` is emitted in `OfferPublished`, not stored.
    struct OfferTerms {
        bytes32 serviceType;
        uint256 unitPrice;
        uint256 units;
        uint256 validUntil;
        string metadataURI;
    }

    /// @notice What a demander asks for. The deposit sent with `postRequest` must be exactly
    /// `maxUnitPrice * units`. `deadline` bounds matching, completion and declining; the refund comes after
    /// it. `policy` is a `MatchingPolicy` (0, 1 or 2; anything else reverts `UnknownPolicy`). `attester`, if
    /// not zero, may confirm completion by signing a `Completion` statement (an EOA or an ERC-1271 contract).
    struct RequestTerms {
        bytes32 serviceType;
        uint256 units;
        uint256 maxUnitPrice;
        uint256 deadline;
        uint8 policy;
        address attester;
    }

    /// @notice How a supplier device authorizes an offer or agreement call. An empty `signature` means the
    /// caller must own the device. Otherwise the device signed DeviceRegistry's
    /// `DeviceAction(uint256 deviceId,address target,bytes32 action,uint256 nonce,uint256 deadline)` with
    /// `target` this contract and `action` the struct hash of the call (see the `*ActionHash` views), and
    /// anyone may submit it: the device needs no gas. The registry consumes the device's nonce.
    struct DeviceAuth {
        uint256 deadline;
        bytes signature;
    }

    /// @notice A stored offer: three storage slots. `units` is what is left; an offer is listed (in the
    /// matching lists) exactly while `units` is not zero. Links are offer ids, 0 at the ends of a list.
    struct Offer {
        uint160 deviceId;
        uint24 epoch;
        uint40 validUntil;
        uint32 units;
        uint96 unitPrice;
        uint40 older;
        uint40 newer;
        uint40 cheaper;
        uint40 dearer;
        bytes32 serviceType;
    }

    /// @notice A stored request: four storage slots. `unitPrice` is the maximum while Open and the agreed
    /// price once Matched (the escrow held is always `unitPrice * units` while Open or Matched). `round`
    /// counts the matches so far and versions completion statements; `feeBps` is fixed at match time;
    /// `payee` (the supplier device's owner at match time) and `offerId` describe the current agreement.
    struct Request {
        address demander;
        MatchingPolicy policy;
        RequestStatus status;
        uint40 deadline;
        uint16 round;
        uint16 feeBps;
        address attester;
        uint96 unitPrice;
        address payee;
        uint40 offerId;
        uint32 units;
        bytes32 serviceType;
    }

    /// @notice The ends of a service type's two lists and how many offers are listed: one storage slot.
    struct Market {
        uint40 oldest;
        uint40 newest;
        uint40 cheapest;
        uint40 dearest;
        uint64 listed;
    }

    /// @notice A supplier device published an offer. Filter on `serviceType` to follow one market.
    event OfferPublished(
        uint256 indexed offerId,
        bytes32 indexed serviceType,
        uint256 indexed deviceId,
        uint256 unitPrice,
        uint256 units,
        uint256 validUntil,
        string metadataURI
    );
    /// @notice The supplier changed an offer's unit price; it moved to its new place in the price list.
    event OfferPriceUpdated(uint256 indexed offerId, bytes32 indexed serviceType, uint256 unitPrice);
    /// @notice The supplier withdrew an offer; it left the lists.
    event OfferWithdrawn(uint256 indexed offerId, bytes32 indexed serviceType, uint256 indexed deviceId);
    /// @notice A dead offer left the lists, removed by `pruneOffers` or by a matching walk.
    event OfferPruned(uint256 indexed offerId, bytes32 indexed serviceType, PruneReason reason);
    /// @notice A demander posted a request with `maxUnitPrice * units` in escrow.
    event RequestPosted(
        uint256 indexed requestId,
        bytes32 indexed serviceType,
        address indexed demander,
        MatchingPolicy policy,
        uint256 units,
        uint256 maxUnitPrice,
        uint256 deadline,
        address attester
    );
    /// @notice A request was matched with an offer: an agreement at the offer's `unitPrice`. `refunded` was
    /// credited to the demander; `unitsLeft` is what the offer still has (0: sold out, it left the lists).
    event RequestMatched(
        uint256 indexed requestId,
        bytes32 indexed serviceType,
        uint256 indexed deviceId,
        uint256 offerId,
        address payee,
        uint256 unitPrice,
        uint256 round,
        uint256 refunded,
        uint256 unitsLeft
    );
    /// @notice The supplier declined the agreement; the request is Open again with `unitPrice` as its
    /// maximum, and the declining offer, if it was still listed, left the lists (`OfferWithdrawn`).
    event AgreementDeclined(uint256 indexed requestId, uint256 indexed offerId, uint256 indexed deviceId, uint256 round);
    /// @notice The demander raised an Open request's maximum unit price, adding `added` to its escrow.
    event RequestMaxRaised(uint256 indexed requestId, uint256 maxUnitPrice, uint256 added);
    /// @notice The agreement was completed, confirmed by `confirmedBy` (the demander or the attester).
    /// `supplierAmount` was credited to the payee and `fee` to the fee recipient.
    event RequestCompleted(
        uint256 indexed requestId,
        uint256 indexed offerId,
        address indexed payee,
        address confirmedBy,
        bytes32 evidence,
        uint256 supplierAmount,
        uint256 fee
    );
    /// @notice The demander took the escrow back from an agreement not completed by its deadline.
    event RequestRefunded(uint256 indexed requestId, address indexed demander, uint256 amount);
    /// @notice The demander cancelled an Open request and took its deposit back.
    event RequestCancelled(uint256 indexed requestId, address indexed demander, uint256 amount);
    /// @notice The protocol fee changed; it applies to agreements matched from now on.
    event FeeConfigured(address indexed recipient, uint256 feeBps);

    error ZeroAddress();
    error ZeroAmount();
    error AmountOutOfRange(uint256 value, uint256 max);
    error TimestampInPast(uint256 timestamp);
    error TimestampTooFar(uint256 timestamp, uint256 latest);
    error UnknownPolicy(uint256 policy);
    error SupplierNotActive(uint256 deviceId);
    error NotDeviceOwner(uint256 deviceId, address caller);
    error OwnerMustPublish(uint256 deviceId, address owner);
    error UnknownOffer(uint256 offerId);
    error OfferNotListed(uint256 offerId);
    error BadPriceHint(uint256 hint);
    error PriceHintTooFar(uint256 hint);
    error WrongDeposit(uint256 expected, uint256 received);
    error MaxNotRaised(uint256 currentMax, uint256 requestedMax);
    error UnknownRequest(uint256 requestId);
    error WrongRequestStatus(uint256 requestId, RequestStatus status);
    error NotDemander(uint256 requestId, address caller);
    error NotPayee(uint256 requestId, address caller);
    error RequestExpired(uint256 requestId, uint256 deadline);
    error DeadlineNotReached(uint256 requestId, uint256 deadline);
    error NoAttester(uint256 requestId);
    error InvalidAttestation(uint256 requestId);
    error FeeTooHigh(uint256 feeBps, uint256 maxFeeBps);

    // ------------------------------------------------------------------ supplier

    /// @notice Publishes an offer of a supplier device, which must be Active. The offer enters the newest end
    /// of the publication list and its place in the price list (see `priceHint`). A device has at most one
    /// listed offer per service type: one it already has is withdrawn first (`OfferWithdrawn`).
    /// @param deviceId The supplier device.
    /// @param terms What is offered.
    /// @param priceHint An offer id of the same service type after which the new price belongs, or 0 for the
    /// cheapest end; from there the contract walks at most `MAX_HINT_STEPS` offers to the exact place (after
    /// every offer of an equal price). `findPriceHint` computes it.
    /// @param auth The owner's call (empty signature) or the device's signed action `PublishOffer`; the
    /// signed action is refused (`OwnerMustPublish`) while the device's owner is a contract, which would
    /// become the payee without having chosen to: contract owners publish with their own call.
    /// @return offerId The new offer's id.
    function publishOffer(uint256 deviceId, OfferTerms calldata terms, uint256 priceHint, DeviceAuth calldata auth)
        external
        returns (uint256 offerId);

    /// @notice Changes the unit price of a listed offer; it moves behind the offers of an equal price.
    /// Agreements already made keep their price.
    /// @param offerId The offer.
    /// @param unitPrice The new unit price.
    /// @param priceHint As in `publishOffer`; the offer's own id means its current place.
    /// @param auth The owner's call or the device's signed action `UpdateOfferPrice`.
    function updateOfferPrice(uint256 offerId, uint256 unitPrice, uint256 priceHint, DeviceAuth calldata auth)
        external;

    /// @notice Withdraws a listed offer: it leaves the lists. Agreements already made stand; to back out of
    /// one, the supplier declines it.
    /// @param offerId The offer.
    /// @param auth The owner's call or the device's signed action `WithdrawOffer`.
    function withdrawOffer(uint256 offerId, DeviceAuth calldata auth) external;

    /// @notice Declines a Matched request by its deadline: the request returns to Open (and to matching) with
    /// the agreed price as its maximum, since that is the escrow it still holds (the demander may raise it
    /// with `raiseMaxUnitPrice`); the declining offer is withdrawn if still listed, and no offer of the
    /// declining device is matched with this request again.
    /// @param requestId The request.
    /// @param auth The call of the agreement's payee (the device's owner at match time), or the device's
    /// signed action `DeclineAgreement`.
    function declineAgreement(uint256 requestId, DeviceAuth calldata auth) external;

    // ------------------------------------------------------------------ demander

    /// @notice Posts a request with its deposit, `maxUnitPrice * units`, and matches it at once if its
    /// policy finds an offer. The caller is the demander: a device's key or any address.
    /// @param terms What is asked for.
    /// @return requestId The new request's id.
    /// @return offerId The offer matched, or 0 when the request stays Open.
    function postRequest(RequestTerms calldata terms) external payable returns (uint256 requestId, uint256 offerId);

    /// @notice Raises the maximum unit price of an Open request; the caller (its demander) sends
    /// `(maxUnitPrice - current maximum) * units`. Then tries to match it, like `postRequest`.
    /// @param requestId The request.
    /// @param maxUnitPrice The new maximum, above the current one.
    /// @return offerId The offer matched, or 0 when the request stays Open.
    function raiseMaxUnitPrice(uint256 requestId, uint256 maxUnitPrice) external payable returns (uint256 offerId);

    /// @notice Cancels an Open request and pays its deposit back to the demander.
    /// @param requestId The request.
    function cancelRequest(uint256 requestId) external;

    /// @notice The demander confirms that the service was delivered, by the request's deadline.
    /// @param requestId The request, Matched.
    /// @param evidence A hash of the off-chain evidence, if any (recorded in `RequestCompleted`).
    function confirmCompletion(uint256 requestId, bytes32 evidence) external;

    /// @notice Completes a Matched request with the attester's EIP-712 signature of
    /// `Completion(uint256 requestId,uint256 offerId,uint256 round,bytes32 evidence)` in this contract's
    /// domain, by the request's deadline. Anyone may submit it. `round` ties the statement to one agreement,
    /// so it cannot be replayed after a decline and a new match.
    /// @param requestId The request, Matched.
    /// @param evidence The hash of the off-chain evidence the attester checked (for example a sensor reading).
    /// @param signature The attester's signature (ECDSA from an EOA, or ERC-1271 from a contract).
    function completeWithAttestation(uint256 requestId, bytes32 evidence, bytes calldata signature) external;

    /// @notice After the deadline of an agreement that was not completed, the demander takes back its escrow.
    /// @param requestId The request, Matched.
    function refund(uint256 requestId) external;

    // ------------------------------------------------------------------ anyone

    /// @notice Runs the request's matching policy (see the contract documentation) and matches it with the
    /// first offer it can take, before the request's deadline. Does not revert when nothing is found.
    /// @param requestId The request, Open.
    /// @return offerId The offer matched, or 0 when none was found within `MAX_MATCH_STEPS`.
    function matchRequest(uint256 requestId) external returns (uint256 offerId);

    /// @notice Removes dead offers (expired, supplier device not Active, or owned by someone else since
    /// publication) from the lists. Ids that are not listed or not dead are skipped.
    /// @param offerIds The offers to look at.
    /// @return pruned How many were removed.
    function pruneOffers(uint256[] calldata offerIds) external returns (uint256 pruned);


    // ------------------------------------------------------------------ views

    /// @notice The stored offer (all zero for an unknown id).
    /// @param offerId The offer.
    /// @return The offer.
    function getOffer(uint256 offerId) external view returns (Offer memory);

    /// @notice The stored request (all zero for an unknown id).
    /// @param requestId The request.
    /// @return The request.
    function getRequest(uint256 requestId) external view returns (Request memory);

    /// @notice The list ends and listed count of a service type.
    /// @param serviceType The service type.
    /// @return The market.
    function marketOf(bytes32 serviceType) external view returns (Market memory);

    /// @notice What `matchRequest` would do now, without pruning: the offer it would take.
    /// @param requestId The request, Open and before its deadline.
    /// @return offerId The offer, or 0.
    /// @return steps How many offers the walk looked at.
    function previewMatch(uint256 requestId) external view returns (uint256 offerId, uint256 steps);

    /// @notice A page of the listed offers of a service type, in the order a policy walks them.
    /// @param serviceType The service type.
    /// @param order The policy whose order to follow.
    /// @param cursor 0 to start at the beginning, else the `next` of the previous page.
    /// @param limit The most ids to return.
    /// @return offerIds The offer ids, dead ones (not yet pruned) included.
    /// @return next The cursor of the next page, 0 at the end.
    function listOffers(bytes32 serviceType, MatchingPolicy order, uint256 cursor, uint256 limit)
        external
        view
        returns (uint256[] memory offerIds, uint256 next);

    /// @notice Walks the price list from `start` (0: the cheapest end) for at most `maxSteps` offers, looking
    /// for the offer after which `unitPrice` belongs.
    /// @param serviceType The service type.
    /// @param unitPrice The price to place.
    /// @param start A listed offer of the type to start from, or 0.
    /// @param maxSteps The most offers to step over.
    /// @return hint The place found so far: the offer to insert after (0: the cheapest end).
    /// @return found Whether `hint` is the exact place; if not, call again with `start = hint`.
    function findPriceHint(bytes32 serviceType, uint256 unitPrice, uint256 start, uint256 maxSteps)
        external
        view
        returns (uint256 hint, bool found);

    /// @notice The listed offer of a device for a service type, or 0.
    /// @param deviceId The supplier device.
    /// @param serviceType The service type.
    /// @return The offer id, or 0.
    function listedOfferOf(uint256 deviceId, bytes32 serviceType) external view returns (uint256);


    /// @notice Whether supplier device `deviceId` declined `requestId` (it is then never matched with it again).
    /// @param requestId The request.
    /// @param deviceId The supplier device.
    /// @return Whether it declined.
    function hasDeclined(uint256 requestId, uint256 deviceId) external view returns (bool);

    /// @notice The EIP-712 digest an attester signs to complete the current agreement of a request.
    /// @param requestId The request.
    /// @param offerId The agreement's offer.
    /// @param round The agreement's round.
    /// @param evidence The evidence hash.
    /// @return The digest in this contract's domain.
    function completionDigest(uint256 requestId, uint256 offerId, uint256 round, bytes32 evidence)
        external
        view
        returns (bytes32);

    /// @notice The struct hash of `PublishOffer(bytes32 serviceType,uint256 unitPrice,uint256 units,uint256 validUntil,string metadataURI)`.
    /// @param terms The offer terms.
    /// @return The action hash a device signs in its DeviceAction.
    function publishOfferActionHash(OfferTerms calldata terms) external pure returns (bytes32);

    /// @notice The struct hash of `UpdateOfferPrice(uint256 offerId,uint256 unitPrice)`.
    /// @param offerId The offer.
    /// @param unitPrice The new price.
    /// @return The action hash.
    function updateOfferPriceActionHash(uint256 offerId, uint256 unitPrice) external pure returns (bytes32);

    /// @notice The struct hash of `WithdrawOffer(uint256 offerId)`.
    /// @param offerId The offer.
    /// @return The action hash.
    function withdrawOfferActionHash(uint256 offerId) external pure returns (bytes32);

    /// @notice The struct hash of `DeclineAgreement(uint256 requestId,uint256 round)`.
    /// @param requestId The request.
    /// @param round The agreement's round.
    /// @return The action hash.
    function declineAgreementActionHash(uint256 requestId, uint256 round) external pure returns (bytes32);
}
