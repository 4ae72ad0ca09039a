// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Test} from "forge-std/Test.sol";
import {CommonBase} from "forge-std/Base.sol";
import {DeviceRegistry} from "../../../contracts/DeviceRegistry.sol";
import {SalesOrder} from "../../../contracts/SalesOrder.sol";
import {IDeviceRegistry} from "../../../interfaces/IDeviceRegistry.sol";
import {ISalesOrder} from "../../../interfaces/ISalesOrder.sol";
import {ServiceMarket} from "../../../contracts/ServiceMarket.sol";
import {IServiceMarket} from "../../../interfaces/IServiceMarket.sol";

/// @notice EIP-712 hashing and signing helpers, written independently of the contracts (type strings are
/// spelled out here), so that the suites check the contracts' encoding instead of reusing it.
/// Handlers of the invariant suites inherit this too (it only needs `vm`).
abstract contract ThingledgerSigning is CommonBase {
    uint256 internal constant SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;

    bytes32 internal constant EIP712_DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 internal constant RECORD_TYPEHASH = keccak256(
        "ManufacturingRecord(string model,string serial,bytes32 firmwareHash,uint64 manufacturedAt,uint64 warrantyEnd,string metadataURI)"
    );
    bytes32 internal constant PROVISION_TYPEHASH = keccak256(
        "Provision(address key,address manufacturer,ManufacturingRecord record,uint256 nonce,uint256 deadline)ManufacturingRecord(string model,string serial,bytes32 firmwareHash,uint64 manufacturedAt,uint64 warrantyEnd,string metadataURI)"
    );
    bytes32 internal constant DEVICE_ACTION_TYPEHASH =
        keccak256("DeviceAction(uint256 deviceId,address target,bytes32 action,uint256 nonce,uint256 deadline)");
    bytes32 internal constant ROTATE_KEY_TYPEHASH =
        keccak256("RotateKey(uint256 deviceId,address newKey,uint256 nonce,uint256 deadline)");
    bytes32 internal constant RELEASE_TYPEHASH = keccak256("Release(uint256 orderId,address buyer)");
    bytes32 internal constant PICKUP_TYPEHASH =
        keccak256("PickupChallenge(uint256 orderId,uint256 gateId,bytes32 challenge,uint256 expiresAt)");

    bytes32 internal constant COMPLETION_TYPEHASH =
        keccak256("Completion(uint256 requestId,uint256 offerId,uint256 round,bytes32 evidence)");
    bytes32 internal constant PUBLISH_OFFER_TYPEHASH = keccak256(
        "PublishOffer(bytes32 serviceType,uint256 unitPrice,uint256 units,uint256 validUntil,string metadataURI)"
    );
    bytes32 internal constant UPDATE_OFFER_PRICE_TYPEHASH = keccak256("UpdateOfferPrice(uint256 offerId,uint256 unitPrice)");
    bytes32 internal constant WITHDRAW_OFFER_TYPEHASH = keccak256("WithdrawOffer(uint256 offerId)");
    bytes32 internal constant DECLINE_AGREEMENT_TYPEHASH = keccak256("DeclineAgreement(uint256 requestId,uint256 round)");

    uint64 internal constant OPERATE = 1;
    uint64 internal constant READ_DATA = 2;
    uint64 internal constant RELEASE = 4;
    uint64 internal constant SERVICE = 8;

    // ------------------------------------------------------------------ keys

    /// @dev A valid secp256k1 private key from any seed.
    function _pk(uint256 seed) internal pure returns (uint256) {
        return (seed % (SECP256K1_N - 1)) + 1;
    }

    // ------------------------------------------------------------------ hashing

    /// @dev DeviceRegistry's domain (name "thingledger DeviceRegistry").
    function _domainSeparator(address verifyingContract, uint256 chainId) internal pure returns (bytes32) {
        return _domainSeparatorNamed("thingledger DeviceRegistry", verifyingContract, chainId);
    }

    /// @dev SalesOrder's domain (name "thingledger SalesOrder"), where buyers sign pickup challenges.
    function _salesDomainSeparator(address verifyingContract, uint256 chainId) internal pure returns (bytes32) {
        return _domainSeparatorNamed("thingledger SalesOrder", verifyingContract, chainId);
    }

    function _domainSeparatorNamed(string memory name, address verifyingContract, uint256 chainId)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(
            abi.encode(EIP712_DOMAIN_TYPEHASH, keccak256(bytes(name)), keccak256("1"), chainId, verifyingContract)
        );
    }

    function _typedDigest(bytes32 domain, bytes32 structHash) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked("\x19\x01", domain, structHash));
    }

    function _recordHash(IDeviceRegistry.ManufacturingRecord memory record) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(
                RECORD_TYPEHASH,
                keccak256(bytes(record.model)),
                keccak256(bytes(record.serial)),
                record.firmwareHash,
                record.manufacturedAt,
                record.warrantyEnd,
                keccak256(bytes(record.metadataURI))
            )
        );
    }

    function _provisionStructHash(
        address key,
        address manufacturer,
        IDeviceRegistry.ManufacturingRecord memory record,
        uint256 nonce,
        uint256 deadline
    ) internal pure returns (bytes32) {
        return keccak256(abi.encode(PROVISION_TYPEHASH, key, manufacturer, _recordHash(record), nonce, deadline));
    }

    function _deviceActionStructHash(uint256 deviceId, address target, bytes32 action, uint256 nonce, uint256 deadline)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(DEVICE_ACTION_TYPEHASH, deviceId, target, action, nonce, deadline));
    }

    function _releaseAction(uint256 orderId, address buyer) internal pure returns (bytes32) {
        return keccak256(abi.encode(RELEASE_TYPEHASH, orderId, buyer));
    }

    function _pickupStructHash(uint256 orderId, uint256 gateId, bytes32 challenge, uint256 expiresAt)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(PICKUP_TYPEHASH, orderId, gateId, challenge, expiresAt));
    }

    // ------------------------------------------------------------------ signing

    function _sign(uint256 pk, bytes32 digest) internal pure returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, digest);
        return abi.encodePacked(r, s, v);
    }

    /// @dev The same signature with s replaced by n - s and v flipped: valid for ecrecover, refused by EIP-2.
    function _malleate(bytes memory sig) internal pure returns (bytes memory) {
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly {
            r := mload(add(sig, 32))
            s := mload(add(sig, 64))
            v := byte(0, mload(add(sig, 96)))
        }
        return abi.encodePacked(r, bytes32(SECP256K1_N - uint256(s)), v == 27 ? uint8(28) : uint8(27));
    }

    /// @dev Provision signature in `registry`'s real domain, nonce 0.
    function _signProvision(
        DeviceRegistry registry,
        uint256 pk,
        address manufacturer,
        IDeviceRegistry.ManufacturingRecord memory record,
        uint256 deadline
    ) internal view returns (bytes memory) {
        return _signProvisionWith(pk, address(registry), block.chainid, manufacturer, record, 0, deadline);
    }

    /// @dev Provision signature with every field of the message and domain chosen by the caller.
    function _signProvisionWith(
        uint256 pk,
        address verifyingContract,
        uint256 chainId,
        address manufacturer,
        IDeviceRegistry.ManufacturingRecord memory record,
        uint256 nonce,
        uint256 deadline
    ) internal pure returns (bytes memory) {
        bytes32 structHash = _provisionStructHash(vm.addr(pk), manufacturer, record, nonce, deadline);
        return _sign(pk, _typedDigest(_domainSeparator(verifyingContract, chainId), structHash));
    }

    /// @dev DeviceAction signature with the device's current nonce, in `registry`'s real domain.
    function _signDeviceAction(
        DeviceRegistry registry,
        uint256 pk,
        uint256 deviceId,
        address target,
        bytes32 action,
        uint256 deadline
    ) internal view returns (bytes memory) {
        uint256 nonce = registry.getDevice(deviceId).nonce;
        return _signDeviceActionWith(pk, address(registry), block.chainid, deviceId, target, action, nonce, deadline);
    }

    function _signDeviceActionWith(
        uint256 pk,
        address verifyingContract,
        uint256 chainId,
        uint256 deviceId,
        address target,
        bytes32 action,
        uint256 nonce,
        uint256 deadline
    ) internal pure returns (bytes memory) {
        bytes32 structHash = _deviceActionStructHash(deviceId, target, action, nonce, deadline);
        return _sign(pk, _typedDigest(_domainSeparator(verifyingContract, chainId), structHash));
    }

    /// @dev RotateKey signature by the new key, with the device's current nonce.
    function _signRotateKey(DeviceRegistry registry, uint256 newPk, uint256 deviceId, uint256 deadline)
        internal
        view
        returns (bytes memory)
    {
        uint256 nonce = registry.getDevice(deviceId).nonce;
        bytes32 structHash = keccak256(abi.encode(ROTATE_KEY_TYPEHASH, deviceId, vm.addr(newPk), nonce, deadline));
        return _sign(newPk, _typedDigest(_domainSeparator(address(registry), block.chainid), structHash));
    }

    /// @dev The gate's DeviceAction signature releasing `orderId` to `buyer` through `sales`.
    function _signRelease(
        DeviceRegistry registry,
        address sales,
        uint256 gatePk,
        uint256 gateId,
        uint256 orderId,
        address buyer,
        uint256 deadline
    ) internal view returns (bytes memory) {
        return _signDeviceAction(registry, gatePk, gateId, sales, _releaseAction(orderId, buyer), deadline);
    }

    /// @dev The buyer's consent: `buyerPk`'s PickupChallenge signature in `sales`'s real domain, carrying
    /// exactly the signed challenge and expiry.
    function _consent(
        address sales,
        uint256 buyerPk,
        uint256 orderId,
        uint256 gateId,
        bytes32 challenge,
        uint256 expiresAt
    ) internal view returns (ISalesOrder.BuyerConsent memory) {
        return ISalesOrder.BuyerConsent({
            challenge: challenge,
            expiresAt: expiresAt,
            signature: _signPickupWith(buyerPk, sales, block.chainid, orderId, gateId, challenge, expiresAt)
        });
    }

    /// @dev PickupChallenge signature with every field of the message and SalesOrder domain chosen by the caller.
    function _signPickupWith(
        uint256 pk,
        address verifyingContract,
        uint256 chainId,
        uint256 orderId,
        uint256 gateId,
        bytes32 challenge,
        uint256 expiresAt
    ) internal pure returns (bytes memory) {
        bytes32 structHash = _pickupStructHash(orderId, gateId, challenge, expiresAt);
        return _sign(pk, _typedDigest(_salesDomainSeparator(verifyingContract, chainId), structHash));
    }

    // ------------------------------------------------------------------ ServiceMarket

    /// @dev ServiceMarket's domain (name "thingledger ServiceMarket"), where attesters sign completions.
    function _marketDomainSeparator(address verifyingContract, uint256 chainId) internal pure returns (bytes32) {
        return _domainSeparatorNamed("thingledger ServiceMarket", verifyingContract, chainId);
    }

    function _completionStructHash(uint256 requestId, uint256 offerId, uint256 round, bytes32 evidence)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(COMPLETION_TYPEHASH, requestId, offerId, round, evidence));
    }

    /// @dev Completion signature with every field of the message and the ServiceMarket domain chosen by the caller.
    function _signCompletionWith(
        uint256 pk,
        address verifyingContract,
        uint256 chainId,
        uint256 requestId,
        uint256 offerId,
        uint256 round,
        bytes32 evidence
    ) internal pure returns (bytes memory) {
        bytes32 structHash = _completionStructHash(requestId, offerId, round, evidence);
        return _sign(pk, _typedDigest(_marketDomainSeparator(verifyingContract, chainId), structHash));
    }

    /// @dev The attester's Completion signature of a request's current agreement, in `market`'s real domain.
    function _signCompletion(ServiceMarket market, uint256 pk, uint256 requestId, bytes32 evidence)
        internal
        view
        returns (bytes memory)
    {
        IServiceMarket.Request memory r = market.getRequest(requestId);
        return _signCompletionWith(pk, address(market), block.chainid, requestId, r.offerId, r.round, evidence);
    }

    function _publishOfferAction(IServiceMarket.OfferTerms memory terms) internal pure returns (bytes32) {
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

    function _updateOfferPriceAction(uint256 offerId, uint256 unitPrice) internal pure returns (bytes32) {
        return keccak256(abi.encode(UPDATE_OFFER_PRICE_TYPEHASH, offerId, unitPrice));
    }

    function _withdrawOfferAction(uint256 offerId) internal pure returns (bytes32) {
        return keccak256(abi.encode(WITHDRAW_OFFER_TYPEHASH, offerId));
    }

    function _declineAgreementAction(uint256 requestId, uint256 round) internal pure returns (bytes32) {
        return keccak256(abi.encode(DECLINE_AGREEMENT_TYPEHASH, requestId, round));
    }

    /// @dev The owner's own call: an empty signature.
    function _ownerAuth() internal pure returns (IServiceMarket.DeviceAuth memory) {
        return IServiceMarket.DeviceAuth({deadline: 0, signature: ""});
    }

    /// @dev The supplier device's signed DeviceAction for `action` on `market`, with its current nonce.
    function _deviceAuth(DeviceRegistry registry, ServiceMarket market, uint256 pk, uint256 deviceId, bytes32 action)
        internal
        view
        returns (IServiceMarket.DeviceAuth memory auth)
    {
        auth.deadline = block.timestamp + 1 hours;
        auth.signature = _signDeviceAction(registry, pk, deviceId, address(market), action, auth.deadline);
    }

    /// @dev Checks a service type's two lists against the Market record and the stored offers, reading only
    /// `getOffer`/`marketOf`/`lastOfferId`: both lists reachable from their ends without a cycle, backward
    /// links equal to forward ones, the far ends equal to the recorded ends, the publication list in id order,
    /// the price list non-decreasing, every listed offer (units != 0) of the type in both lists and nothing
    /// else, `listed` equal to both counts. Returns "" when everything holds, else what broke.
    function _listViolation(ServiceMarket market, bytes32 serviceType) internal view returns (string memory) {
        IServiceMarket.Market memory m = market.marketOf(serviceType);
        uint256 last = market.lastOfferId();
        uint256 expected;
        for (uint256 id = 1; id <= last; ++id) {
            IServiceMarket.Offer memory o = market.getOffer(id);
            if (o.units != 0 && o.serviceType == serviceType) ++expected;
        }
        if (m.listed != expected) return "listed != offers of the type with units left";

        // publication list, oldest to newest
        uint256 count;
        uint256 prev;
        uint256 current = m.oldest;
        while (current != 0) {
            if (count++ > last) return "publication list has a cycle";
            IServiceMarket.Offer memory o = market.getOffer(current);
            if (o.units == 0) return "unlisted offer in the publication list";
            if (o.serviceType != serviceType) return "foreign offer in the publication list";
            if (o.older != prev) return "publication list: older link != previous";
            if (current <= prev) return "publication list not in publication (id) order";
            prev = current;
            current = o.newer;
        }
        if (prev != m.newest) return "publication list: far end != newest";
        if (count != expected) return "publication list count != listed";

        // price list, cheapest to dearest
        count = 0;
        prev = 0;
        uint256 prevPrice;
        current = m.cheapest;
        while (current != 0) {
            if (count++ > last) return "price list has a cycle";
            IServiceMarket.Offer memory o = market.getOffer(current);
            if (o.units == 0) return "unlisted offer in the price list";
            if (o.serviceType != serviceType) return "foreign offer in the price list";
            if (o.cheaper != prev) return "price list: cheaper link != previous";
            if (o.unitPrice < prevPrice) return "price list not sorted";
            prevPrice = o.unitPrice;
            prev = current;
            current = o.dearer;
        }
        if (prev != m.dearest) return "price list: far end != dearest";
        if (count != expected) return "price list count != listed";
        return "";
    }

    // ------------------------------------------------------------------ fixtures

    function _defaultRecord() internal view returns (IDeviceRegistry.ManufacturingRecord memory) {
        return IDeviceRegistry.ManufacturingRecord({
            model: "TL-Gate-2",
            serial: "SN-0001",
            firmwareHash: keccak256("firmware v1.0.0"),
            manufacturedAt: uint64(block.timestamp),
            warrantyEnd: uint64(block.timestamp + 730 days),
            metadataURI: "ipfs://thingledger/record"
        });
    }

    /// @dev Provisions the device of key `pk` as `manufacturer` (who must hold MANUFACTURER_ROLE), hands it
    /// to `owner` and activates it when asked.
    function _provisionDevice(DeviceRegistry registry, address manufacturer, uint256 pk, address owner, bool activate)
        internal
        returns (uint256 deviceId)
    {
        IDeviceRegistry.ManufacturingRecord memory record = _defaultRecord();
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory sig = _signProvision(registry, pk, manufacturer, record, deadline);
        vm.prank(manufacturer);
        deviceId = registry.provision(vm.addr(pk), record, deadline, sig);
        if (owner != manufacturer) {
            vm.prank(manufacturer);
            registry.transferFrom(manufacturer, owner, deviceId);
        }
        if (activate) {
            vm.prank(owner);
            registry.activate(deviceId);
        }
    }

    function _item(string memory make, string memory model, uint16 year, string memory serial)
        internal
        pure
        returns (ISalesOrder.Item memory)
    {
        return ISalesOrder.Item({make: make, model: model, year: year, serial: serial});
    }
}

/// @notice Base of the unit-style fuzz suites: a fresh registry and sales contract per test.
abstract contract ThingledgerTest is ThingledgerSigning, Test {
    DeviceRegistry internal registry;
    SalesOrder internal sales;

    address internal admin = makeAddr("admin");
    address internal manufacturer = makeAddr("manufacturer");
    address internal manufacturer2 = makeAddr("manufacturer2");

    function setUp() public virtual {
        vm.warp(1_750_000_000);
        registry = new DeviceRegistry(admin);
        sales = new SalesOrder(IDeviceRegistry(address(registry)), admin);
        bytes32 role = registry.MANUFACTURER_ROLE();
        vm.startPrank(admin);
        registry.grantRole(role, manufacturer);
        registry.grantRole(role, manufacturer2);
        vm.stopPrank();
    }

    /// @dev Provisions, hands over and activates a device; returns its id.
    function _device(uint256 pk, address owner) internal returns (uint256) {
        return _provisionDevice(registry, manufacturer, pk, owner, true);
    }

    /// @dev Lists `item` at `price` as `seller` (no device, no deadline).
    function _list(address seller, uint256 price) internal returns (uint256 orderId) {
        vm.prank(seller);
        orderId = sales.createOrder(_item("Acme", "Widget", 2024, "S-1"), price, 0, 0);
    }
}
