"""DeviceRegistry: provisioning, lifecycle, admission control, device-signed actions, key rotation.

Every external function is exercised on its success path (state + event with arguments) and on each
of its revert paths (the precise custom error and its arguments), plus the replay/forgery attacks on
the device signatures.

Lifecycle (activate, suspend, resume, decommission), grants and key rotation are the token OWNER's alone:
ERC-721 approved addresses and operators (``approve``, ``setApprovalForAll``) can move the token, nothing
more (so SalesOrder's escrow, or a marketplace, can never brick or hijack a device).
"""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak

from contract_helpers import (
    ACTIVE,
    DAY,
    DECOMMISSIONED,
    DEFAULT_ADMIN_ROLE,
    MANUFACTURER_ROLE,
    MAX_UINT32,
    NONE,
    OPERATE,
    PROVISIONED,
    READ_DATA,
    RELEASE,
    SERVICE,
    SUSPENDED,
    ZERO_ADDRESS,
    assert_no_event,
    assert_single_event,
    make_record,
    reverts,
    sign,
    to_compact,
    to_high_s,
)
from thingledger_device import typed_data
from thingledger_device.typed_data import record_tuple

pytestmark = pytest.mark.usefixtures("_deployments")

ACTION = keccak(text="open the valve")


# =========================================================================== deployment


def test_constructor_gives_admin_role_to_admin_only(registry, admin, manufacturer, stranger):
    assert registry.hasRole(DEFAULT_ADMIN_ROLE, admin)
    assert bytes(registry.MANUFACTURER_ROLE()) == MANUFACTURER_ROLE
    assert not registry.hasRole(DEFAULT_ADMIN_ROLE, manufacturer)
    assert not registry.hasRole(MANUFACTURER_ROLE, admin)
    assert not registry.hasRole(MANUFACTURER_ROLE, stranger)
    assert registry.name() == "thingledger Device"
    assert registry.symbol() == "TLDEV"


def test_constructor_rejects_zero_admin(project, admin, registry):
    with reverts(registry.ZeroAddress):
        admin.deploy(project.DeviceRegistry, ZERO_ADDRESS)


def test_supports_erc721_accesscontrol_and_erc165_interfaces(registry):
    assert registry.supportsInterface(bytes.fromhex("80ac58cd"))  # IERC721
    assert registry.supportsInterface(bytes.fromhex("5b5e139f"))  # IERC721Metadata
    assert registry.supportsInterface(bytes.fromhex("7965db0b"))  # IAccessControl
    assert registry.supportsInterface(bytes.fromhex("01ffc9a7"))  # IERC165
    assert not registry.supportsInterface(bytes.fromhex("ffffffff"))


def test_domain_separator_binds_chain_id_and_registry_address(kit, registry, registry2, chain_id):
    key = Account.create()

    def separator(chain, address):
        msg = typed_data.provision_message(chain, address, key.address, key.address, make_record(), 1)
        return bytes(encode_typed_data(full_message=msg).header)

    assert bytes(registry.domainSeparator()) == separator(chain_id, registry.address)
    assert bytes(registry2.domainSeparator()) == separator(chain_id, registry2.address)
    assert bytes(registry.domainSeparator()) != bytes(registry2.domainSeparator())
    assert bytes(registry.domainSeparator()) != separator(chain_id + 1, registry.address)


def test_admin_manages_manufacturer_role(registry, admin, stranger, kit):
    receipt = registry.grantRole(MANUFACTURER_ROLE, stranger, sender=admin)
    assert_single_event(
        receipt, registry.RoleGranted, role=MANUFACTURER_ROLE, account=stranger.address, sender=admin.address
    )
    device, _ = kit.provision(manufacturer=stranger)
    assert registry.ownerOf(device.id) == stranger.address

    registry.revokeRole(MANUFACTURER_ROLE, stranger, sender=admin)
    key = Account.create()
    deadline = kit.deadline()
    sig = kit.provision_signature(key, manufacturer=stranger, deadline=deadline)
    with reverts(registry.AccessControlUnauthorizedAccount, account=stranger.address, neededRole=MANUFACTURER_ROLE):
        registry.provision(key.address, record_tuple(make_record()), deadline, sig, sender=stranger)


def test_non_admin_cannot_grant_manufacturer_role(registry, stranger):
    with reverts(registry.AccessControlUnauthorizedAccount, account=stranger.address, neededRole=DEFAULT_ADMIN_ROLE):
        registry.grantRole(MANUFACTURER_ROLE, stranger, sender=stranger)


# =========================================================================== provision


def test_provision_mints_token_to_manufacturer_and_emits_full_record(kit, registry, manufacturer):
    key = Account.create()
    record = make_record(model="TL-Sensor", serial="SN-42", warrantyEnd=1_900_000_000)
    balance_before = registry.balanceOf(manufacturer)
    device, receipt = kit.provision(key=key, record=record)

    assert device.id == int(key.address, 16)
    assert registry.ownerOf(device.id) == manufacturer.address
    assert registry.balanceOf(manufacturer) == balance_before + 1
    stored = registry.getDevice(device.id)
    assert stored.key == key.address
    assert stored.state == PROVISIONED
    assert stored.warrantyEnd == 1_900_000_000
    assert stored.nonce == 1  # provisioning consumed nonce 0
    assert stored.epoch == 0  # minting is not an ownership change
    assert registry.deviceIdOfKey(key.address) == device.id
    assert registry.isKeyUsed(key.address)

    log = assert_single_event(
        receipt,
        registry.DeviceProvisioned,
        deviceId=device.id,
        manufacturer=manufacturer.address,
        key=key.address,
        recordHash=bytes(registry.hashRecord(record_tuple(record))),
    )
    assert list(log.record) == list(record_tuple(record))
    assert_single_event(
        receipt, registry.Transfer, **{"from": ZERO_ADDRESS, "to": manufacturer.address, "tokenId": device.id}
    )


def test_hash_record_is_the_eip712_struct_hash(registry):
    record = make_record(metadataURI="https://example.com/d/1")
    fields = typed_data.MANUFACTURING_RECORD_FIELDS
    type_string = "ManufacturingRecord(" + ",".join(f"{f['type']} {f['name']}" for f in fields) + ")"
    expected = keccak(
        keccak(text=type_string)
        + keccak(text=record["model"])
        + keccak(text=record["serial"])
        + record["firmwareHash"]
        + record["manufacturedAt"].to_bytes(32, "big")
        + record["warrantyEnd"].to_bytes(32, "big")
        + keccak(text=record["metadataURI"])
    )
    assert bytes(registry.hashRecord(record_tuple(record))) == expected
    assert bytes(registry.hashRecord(record_tuple(make_record(serial="other")))) != expected


def test_provision_accepts_deadline_equal_to_block_time(kit, registry, manufacturer, chain):
    key = Account.create()
    deadline = kit.now() + 10
    sig = kit.provision_signature(key, deadline=deadline)
    chain.pending_timestamp = deadline
    registry.provision(key.address, record_tuple(make_record()), deadline, sig, sender=manufacturer)
    assert registry.getDevice(int(key.address, 16)).state == PROVISIONED


def test_provision_rejects_expired_deadline(kit, registry, manufacturer):
    key = Account.create()
    deadline = kit.now() + 10
    sig = kit.provision_signature(key, deadline=deadline)
    kit.warp(11)
    with reverts(registry.SignatureExpired, deadline=deadline):
        registry.provision(key.address, record_tuple(make_record()), deadline, sig, sender=manufacturer)
    assert not registry.isKeyUsed(key.address)


def test_provision_requires_manufacturer_role(kit, registry, stranger):
    key = Account.create()
    deadline = kit.deadline()
    sig = kit.provision_signature(key, manufacturer=stranger, deadline=deadline)
    with reverts(registry.AccessControlUnauthorizedAccount, account=stranger.address, neededRole=MANUFACTURER_ROLE):
        registry.provision(key.address, record_tuple(make_record()), deadline, sig, sender=stranger)


def test_provision_rejects_zero_key(kit, registry, manufacturer):
    with reverts(registry.ZeroAddress):
        registry.provision(ZERO_ADDRESS, record_tuple(make_record()), kit.deadline(), b"\x00" * 65, sender=manufacturer)


def test_provision_rejects_warranty_end_beyond_uint32(kit, registry, manufacturer):
    key = Account.create()
    record = make_record(warrantyEnd=MAX_UINT32 + 1)
    deadline = kit.deadline()
    sig = kit.provision_signature(key, record=record, deadline=deadline)
    with reverts(registry.TimestampOutOfRange, timestamp=MAX_UINT32 + 1):
        registry.provision(key.address, record_tuple(record), deadline, sig, sender=manufacturer)


def test_provision_accepts_warranty_end_at_uint32_max(kit, registry):
    device, _ = kit.provision(record=make_record(warrantyEnd=MAX_UINT32))
    assert registry.getDevice(device.id).warrantyEnd == MAX_UINT32


def test_provision_signature_replay_on_same_registry_is_refused(kit, registry, manufacturer):
    key = Account.create()
    record = make_record()
    deadline = kit.deadline()
    sig = kit.provision_signature(key, record=record, deadline=deadline)
    registry.provision(key.address, record_tuple(record), deadline, sig, sender=manufacturer)
    with reverts(registry.KeyAlreadyUsed, key=key.address):
        registry.provision(key.address, record_tuple(record), deadline, sig, sender=manufacturer)


def test_provision_signature_replay_onto_second_registry_is_refused(kit, registry, registry2, manufacturer):
    key = Account.create()
    record = make_record()
    deadline = kit.deadline()
    sig = kit.provision_signature(key, record=record, deadline=deadline, registry=registry)
    registry.provision(key.address, record_tuple(record), deadline, sig, sender=manufacturer)
    with reverts(registry2.InvalidProvisioningSignature, key=key.address):
        registry2.provision(key.address, record_tuple(record), deadline, sig, sender=manufacturer)
    assert not registry2.isKeyUsed(key.address)


def test_provision_signature_for_another_chain_id_is_refused(kit, registry, manufacturer, chain_id):
    key = Account.create()
    deadline = kit.deadline()
    sig = kit.provision_signature(key, deadline=deadline, chain_id=chain_id + 1)
    with reverts(registry.InvalidProvisioningSignature, key=key.address):
        registry.provision(key.address, record_tuple(make_record()), deadline, sig, sender=manufacturer)


def test_provision_signature_by_wrong_key_is_refused(kit, registry, manufacturer):
    key, impostor = Account.create(), Account.create()
    deadline = kit.deadline()
    msg = typed_data.provision_message(
        kit.chain_id, registry.address, key.address, manufacturer.address, make_record(), deadline
    )
    with reverts(registry.InvalidProvisioningSignature, key=key.address):
        registry.provision(key.address, record_tuple(make_record()), deadline, sign(impostor, msg), sender=manufacturer)


def test_provision_signature_cannot_be_front_run_by_other_manufacturer(kit, registry, manufacturer, other_manufacturer):
    key = Account.create()
    deadline = kit.deadline()
    sig = kit.provision_signature(key, manufacturer=manufacturer, deadline=deadline)
    with reverts(registry.InvalidProvisioningSignature, key=key.address):
        registry.provision(key.address, record_tuple(make_record()), deadline, sig, sender=other_manufacturer)
    # The intended manufacturer can still use it.
    registry.provision(key.address, record_tuple(make_record()), deadline, sig, sender=manufacturer)
    assert registry.ownerOf(int(key.address, 16)) == manufacturer.address


@pytest.mark.parametrize("tamper", ["record", "deadline"])
def test_provision_signature_does_not_cover_altered_record_or_deadline(kit, registry, manufacturer, tamper):
    key = Account.create()
    deadline = kit.deadline()
    record = make_record()
    sig = kit.provision_signature(key, record=record, deadline=deadline)
    if tamper == "record":
        record = make_record(warrantyEnd=record["warrantyEnd"] + 365 * DAY)
    else:
        deadline += 1
    with reverts(registry.InvalidProvisioningSignature, key=key.address):
        registry.provision(key.address, record_tuple(record), deadline, sig, sender=manufacturer)


def test_provision_refuses_malleable_high_s_signature(kit, registry, manufacturer):
    key = Account.create()
    deadline = kit.deadline()
    sig = kit.provision_signature(key, deadline=deadline)
    with reverts(registry.InvalidProvisioningSignature, key=key.address):
        registry.provision(key.address, record_tuple(make_record()), deadline, to_high_s(sig), sender=manufacturer)
    # The canonical low-s form of the very same signature is accepted.
    registry.provision(key.address, record_tuple(make_record()), deadline, sig, sender=manufacturer)
    assert registry.getDevice(int(key.address, 16)).state == PROVISIONED


@pytest.mark.parametrize("form", ["empty", "short", "compact_64_bytes", "v_zero", "long_66_bytes", "all_zero"])
def test_provision_refuses_malformed_signature(kit, registry, manufacturer, form):
    key = Account.create()
    deadline = kit.deadline()
    sig = kit.provision_signature(key, deadline=deadline)
    bad = {
        "empty": b"",
        "short": sig[:20],
        "compact_64_bytes": to_compact(sig),
        "v_zero": sig[:64] + bytes([sig[64] - 27]),
        "long_66_bytes": sig + b"\x00",
        "all_zero": b"\x00" * 65,
    }[form]
    with reverts(registry.InvalidProvisioningSignature, key=key.address):
        registry.provision(key.address, record_tuple(make_record()), deadline, bad, sender=manufacturer)


def test_provision_refuses_key_of_decommissioned_device(kit, registry, manufacturer):
    device, _ = kit.provision()
    registry.decommission(device.id, sender=manufacturer)
    deadline = kit.deadline()
    sig = kit.provision_signature(device.key, deadline=deadline)
    with reverts(registry.KeyAlreadyUsed, key=device.key.address):
        registry.provision(device.key.address, record_tuple(make_record()), deadline, sig, sender=manufacturer)


def test_provision_refuses_key_rotated_into_another_device(kit, registry, manufacturer):
    device, _ = kit.provision()
    new_key = Account.create()
    deadline, rsig = kit.rotate_signature(device, new_key)
    registry.rotateKey(device.id, new_key.address, deadline, rsig, sender=manufacturer)
    deadline = kit.deadline()
    sig = kit.provision_signature(new_key, deadline=deadline)
    with reverts(registry.KeyAlreadyUsed, key=new_key.address):
        registry.provision(new_key.address, record_tuple(make_record()), deadline, sig, sender=manufacturer)


def test_provision_refuses_first_key_after_it_was_rotated_out(kit, registry, manufacturer):
    device, _ = kit.provision()
    deadline, rsig = kit.rotate_signature(device, new_key := Account.create())
    registry.rotateKey(device.id, new_key.address, deadline, rsig, sender=manufacturer)
    deadline = kit.deadline()
    sig = kit.provision_signature(device.key, deadline=deadline)
    with reverts(registry.KeyAlreadyUsed, key=device.key.address):
        registry.provision(device.key.address, record_tuple(make_record()), deadline, sig, sender=manufacturer)


# =========================================================================== lifecycle

TRANSITIONS = {
    # function: (allowed from, to, event name)
    "activate": (PROVISIONED, ACTIVE, "DeviceActivated"),
    "suspend": (ACTIVE, SUSPENDED, "DeviceSuspended"),
    "resume": (SUSPENDED, ACTIVE, "DeviceResumed"),
}


def _device_in_state(kit, registry, holder, state):
    """A device owned by ``holder`` in lifecycle ``state``."""
    device = kit.new_device(owner=holder, active=False)
    if state in (ACTIVE, SUSPENDED):
        registry.activate(device.id, sender=holder)
    if state == SUSPENDED:
        registry.suspend(device.id, sender=holder)
    if state == DECOMMISSIONED:
        registry.decommission(device.id, sender=holder)
    assert registry.getDevice(device.id).state == state
    return device


@pytest.mark.parametrize("function", ["activate", "suspend", "resume"])
def test_allowed_transition_changes_state_and_emits(kit, registry, owner, function):
    start, end, event = TRANSITIONS[function]
    device = _device_in_state(kit, registry, owner, start)
    receipt = getattr(registry, function)(device.id, sender=owner)
    assert registry.getDevice(device.id).state == end
    assert_single_event(receipt, getattr(registry, event), deviceId=device.id, owner=owner.address)


@pytest.mark.parametrize("start", [PROVISIONED, ACTIVE, SUSPENDED])
def test_decommission_from_any_live_state_is_final(kit, registry, owner, start):
    device = _device_in_state(kit, registry, owner, start)
    receipt = registry.decommission(device.id, sender=owner)
    assert registry.getDevice(device.id).state == DECOMMISSIONED
    assert_single_event(receipt, registry.DeviceDecommissioned, deviceId=device.id, owner=owner.address)
    assert registry.ownerOf(device.id) == owner.address  # the token stays, frozen


FORBIDDEN = [
    ("activate", ACTIVE),
    ("activate", SUSPENDED),
    ("activate", DECOMMISSIONED),
    ("suspend", PROVISIONED),
    ("suspend", SUSPENDED),
    ("suspend", DECOMMISSIONED),
    ("resume", PROVISIONED),
    ("resume", ACTIVE),
    ("resume", DECOMMISSIONED),
    ("decommission", DECOMMISSIONED),
]


@pytest.mark.parametrize("function,state", FORBIDDEN, ids=[f"{f}-from-{s}" for f, s in FORBIDDEN])
def test_forbidden_transition_reverts(kit, registry, owner, function, state):
    device = _device_in_state(kit, registry, owner, state)
    with reverts(registry.InvalidStateTransition, deviceId=device.id, current=state):
        getattr(registry, function)(device.id, sender=owner)
    assert registry.getDevice(device.id).state == state


@pytest.mark.parametrize("function", ["activate", "suspend", "resume", "decommission"])
def test_lifecycle_by_non_owner_reverts(kit, registry, owner, stranger, function):
    state = {"activate": PROVISIONED, "suspend": ACTIVE, "resume": SUSPENDED, "decommission": ACTIVE}[function]
    device = _device_in_state(kit, registry, owner, state)
    with reverts(registry.NotDeviceOwner, deviceId=device.id, caller=stranger.address):
        getattr(registry, function)(device.id, sender=stranger)
    assert registry.getDevice(device.id).state == state


def test_previous_owner_loses_control_after_transfer(kit, registry, manufacturer, owner):
    device = kit.new_device(owner=owner, active=False)  # manufacturer transferred it to owner
    with reverts(registry.NotDeviceOwner, deviceId=device.id, caller=manufacturer.address):
        registry.activate(device.id, sender=manufacturer)


@pytest.mark.parametrize("function", ["activate", "suspend", "resume", "decommission"])
def test_lifecycle_on_unknown_device_reverts(registry, owner, function):
    with reverts(registry.UnknownDevice, deviceId=12345):
        getattr(registry, function)(12345, sender=owner)


OWNER_ONLY = ["activate", "suspend", "resume", "decommission", "grantPermissions", "revokePermissions", "rotateKey"]
OWNER_ONLY_START = {
    "activate": PROVISIONED,
    "suspend": ACTIVE,
    "resume": SUSPENDED,
    "decommission": ACTIVE,
    "grantPermissions": ACTIVE,
    "revokePermissions": ACTIVE,
    "rotateKey": ACTIVE,
}
OWNER_ONLY_EVENT = {
    "activate": "DeviceActivated",
    "suspend": "DeviceSuspended",
    "resume": "DeviceResumed",
    "decommission": "DeviceDecommissioned",
    "grantPermissions": "PermissionsGranted",
    "revokePermissions": "PermissionsRevoked",
    "rotateKey": "DeviceKeyRotated",
}


def _call_owner_only(kit, registry, function, device, grantee, new_key, sender):
    if function == "grantPermissions":
        return registry.grantPermissions(device.id, grantee, SERVICE, kit.now() + DAY, sender=sender)
    if function == "revokePermissions":
        return registry.revokePermissions(device.id, grantee, sender=sender)
    if function == "rotateKey":
        deadline, sig = kit.rotate_signature(device, new_key)
        return registry.rotateKey(device.id, new_key.address, deadline, sig, sender=sender)
    return getattr(registry, function)(device.id, sender=sender)


def _registry_view(registry, device_id, grantee):
    d = registry.getDevice(device_id)
    return (d.key, d.state, d.nonce, d.epoch, tuple(registry.grantOf(device_id, grantee)), registry.ownerOf(device_id))


@pytest.mark.parametrize("function", OWNER_ONLY)
@pytest.mark.parametrize("approval", ["token_approval", "operator_for_all"])
def test_approved_operator_cannot_manage_the_device_but_can_transfer_it(
    kit, registry, owner, stranger, seller, approval, function
):
    """ERC-721 approvals move the token and nothing else: an approved address (``approve``) or an operator
    (``setApprovalForAll``) gets NotDeviceOwner from every lifecycle, grant and key function, leaving the
    device untouched, yet its transferFrom works; once it owns the token, the same call succeeds."""
    device = _device_in_state(kit, registry, owner, OWNER_ONLY_START[function])
    registry.grantPermissions(device.id, seller, OPERATE, kit.now() + DAY, sender=owner)  # something to revoke
    if approval == "token_approval":
        registry.approve(stranger, device.id, sender=owner)
        assert registry.getApproved(device.id) == stranger.address
    else:
        registry.setApprovalForAll(stranger, True, sender=owner)
        assert registry.isApprovedForAll(owner, stranger)
    new_key = Account.create()
    before = _registry_view(registry, device.id, seller)

    with reverts(registry.NotDeviceOwner, deviceId=device.id, caller=stranger.address):
        _call_owner_only(kit, registry, function, device, seller, new_key, stranger)
    assert _registry_view(registry, device.id, seller) == before

    # The approval still moves the token: here, to the operator itself.
    receipt = registry.transferFrom(owner, stranger, device.id, sender=stranger)
    assert_single_event(receipt, registry.Transfer, **{"from": owner.address, "to": stranger.address, "tokenId": device.id})
    assert registry.ownerOf(device.id) == stranger.address
    receipt = _call_owner_only(kit, registry, function, device, seller, new_key, stranger)
    assert_single_event(receipt, getattr(registry, OWNER_ONLY_EVENT[function]), deviceId=device.id)
    # ... and the former owner, who approved it, is now the outsider.
    with reverts(registry.NotDeviceOwner, deviceId=device.id, caller=owner.address):
        _call_owner_only(kit, registry, function, device, seller, Account.create(), owner)


@pytest.mark.parametrize("approval", ["token_approval", "operator_for_all"])
def test_approved_operator_moves_the_token_to_a_third_party(kit, registry, owner, stranger, seller, approval):
    device = kit.new_device(owner=owner)
    if approval == "token_approval":
        registry.approve(stranger, device.id, sender=owner)
    else:
        registry.setApprovalForAll(stranger, True, sender=owner)
    with reverts(registry.NotDeviceOwner, deviceId=device.id, caller=stranger.address):
        registry.suspend(device.id, sender=stranger)
    registry.safeTransferFrom(owner, seller, device.id, sender=stranger)
    assert registry.ownerOf(device.id) == seller.address
    assert registry.getApproved(device.id) == ZERO_ADDRESS  # a token approval ends with the transfer
    registry.suspend(device.id, sender=seller)
    assert registry.getDevice(device.id).state == SUSPENDED


def test_transfer_moves_ownership_epoch_but_mint_does_not(kit, registry, manufacturer, owner, stranger):
    device, _ = kit.provision()
    assert registry.getDevice(device.id).epoch == 0
    registry.transferFrom(manufacturer, owner, device.id, sender=manufacturer)
    assert registry.getDevice(device.id).epoch == 1
    registry.safeTransferFrom(owner, stranger, device.id, sender=owner)
    assert registry.getDevice(device.id).epoch == 2
    assert registry.ownerOf(device.id) == stranger.address


@pytest.mark.parametrize("how", ["transferFrom", "safeTransferFrom", "approved_operator"])
def test_decommissioned_token_cannot_transfer(kit, registry, owner, stranger, how):
    device = _device_in_state(kit, registry, owner, DECOMMISSIONED)
    with reverts(registry.DeviceIsDecommissioned, deviceId=device.id):
        if how == "transferFrom":
            registry.transferFrom(owner, stranger, device.id, sender=owner)
        elif how == "safeTransferFrom":
            registry.safeTransferFrom(owner, stranger, device.id, sender=owner)
        else:
            registry.setApprovalForAll(stranger, True, sender=owner)
            registry.transferFrom(owner, stranger, device.id, sender=stranger)
    assert registry.ownerOf(device.id) == owner.address


def test_decommissioned_device_cannot_act_be_granted_or_rotated(kit, registry, owner, stranger):
    device = _device_in_state(kit, registry, owner, DECOMMISSIONED)
    deadline, sig = kit.action_signature(device, owner.address, ACTION)
    with reverts(registry.DeviceNotActive, deviceId=device.id, current=DECOMMISSIONED):
        registry.useDeviceAction(device.id, ACTION, deadline, sig, sender=owner)
    with reverts(registry.DeviceIsDecommissioned, deviceId=device.id):
        registry.grantPermissions(device.id, stranger, OPERATE, kit.deadline(), sender=owner)
    new_key = Account.create()
    deadline, rsig = kit.rotate_signature(device, new_key)
    with reverts(registry.DeviceIsDecommissioned, deviceId=device.id):
        registry.rotateKey(device.id, new_key.address, deadline, rsig, sender=owner)
    assert not registry.hasPermission(device.id, owner, OPERATE)
    assert not registry.warrantyActive(device.id)


# =========================================================================== admission control


def test_grant_permissions_stores_grant_and_emits(kit, registry, owner, stranger):
    device = kit.new_device(owner=owner)
    expires = kit.now() + DAY
    receipt = registry.grantPermissions(device.id, stranger, OPERATE | READ_DATA, expires, sender=owner)
    assert_single_event(
        receipt,
        registry.PermissionsGranted,
        deviceId=device.id,
        grantee=stranger.address,
        permissions=OPERATE | READ_DATA,
        expiresAt=expires,
        epoch=1,  # one transfer (manufacturer -> owner)
    )
    assert tuple(registry.grantOf(device.id, stranger)) == (OPERATE | READ_DATA, expires, True)
    assert registry.hasPermission(device.id, stranger, OPERATE)


@pytest.mark.parametrize("approval", ["token_approval", "operator_for_all"])
def test_grant_and_revoke_by_approved_operator_revert(kit, registry, owner, stranger, seller, approval):
    device = kit.new_device(owner=owner)
    registry.grantPermissions(device.id, seller, READ_DATA, kit.now() + DAY, sender=owner)
    if approval == "token_approval":
        registry.approve(stranger, device.id, sender=owner)
    else:
        registry.setApprovalForAll(stranger, True, sender=owner)
    for grantee in (seller, stranger):  # not for another, not for itself
        with reverts(registry.NotDeviceOwner, deviceId=device.id, caller=stranger.address):
            registry.grantPermissions(device.id, grantee, SERVICE, kit.now() + DAY, sender=stranger)
    with reverts(registry.NotDeviceOwner, deviceId=device.id, caller=stranger.address):
        registry.revokePermissions(device.id, seller, sender=stranger)
    assert not registry.hasPermission(device.id, seller, SERVICE)
    assert not registry.hasPermission(device.id, stranger, SERVICE)
    assert registry.hasPermission(device.id, seller, READ_DATA)  # the owner's grant stands


def test_grant_replaces_previous_grant(kit, registry, owner, stranger):
    device = kit.new_device(owner=owner)
    registry.grantPermissions(device.id, stranger, OPERATE | SERVICE, kit.now() + DAY, sender=owner)
    expires = kit.now() + 2 * DAY
    registry.grantPermissions(device.id, stranger, READ_DATA, expires, sender=owner)
    assert tuple(registry.grantOf(device.id, stranger)) == (READ_DATA, expires, True)
    assert not registry.hasPermission(device.id, stranger, OPERATE)
    assert registry.hasPermission(device.id, stranger, READ_DATA)


def test_grant_by_non_owner_reverts(kit, registry, owner, stranger):
    device = kit.new_device(owner=owner)
    with reverts(registry.NotDeviceOwner, deviceId=device.id, caller=stranger.address):
        registry.grantPermissions(device.id, stranger, OPERATE, kit.now() + DAY, sender=stranger)


def test_grant_on_unknown_device_reverts(kit, registry, owner, stranger):
    with reverts(registry.UnknownDevice, deviceId=777):
        registry.grantPermissions(777, stranger, OPERATE, kit.now() + DAY, sender=owner)


def test_grant_to_zero_address_reverts(kit, registry, owner):
    device = kit.new_device(owner=owner)
    with reverts(registry.ZeroAddress):
        registry.grantPermissions(device.id, ZERO_ADDRESS, OPERATE, kit.now() + DAY, sender=owner)


def test_grant_of_no_permission_bits_reverts(kit, registry, owner, stranger):
    device = kit.new_device(owner=owner)
    with reverts(registry.EmptyPermissions):
        registry.grantPermissions(device.id, stranger, 0, kit.now() + DAY, sender=owner)


@pytest.mark.parametrize("offset", [0, -1])
def test_grant_expiring_now_or_in_the_past_reverts(kit, registry, owner, stranger, chain, offset):
    device = kit.new_device(owner=owner)
    expires = kit.now() + 100 + offset
    chain.pending_timestamp = kit.now() + 100
    with reverts(registry.GrantAlreadyExpired, expiresAt=expires):
        registry.grantPermissions(device.id, stranger, OPERATE, expires, sender=owner)


def test_grant_made_while_provisioned_goes_live_on_activation(kit, registry, owner, stranger):
    device = kit.new_device(owner=owner, active=False)
    expires = kit.now() + DAY
    registry.grantPermissions(device.id, stranger, OPERATE, expires, sender=owner)
    assert tuple(registry.grantOf(device.id, stranger)) == (OPERATE, expires, False)
    assert not registry.hasPermission(device.id, stranger, OPERATE)
    registry.activate(device.id, sender=owner)
    assert registry.grantOf(device.id, stranger).live
    assert registry.hasPermission(device.id, stranger, OPERATE)


def test_revoke_permissions_deletes_grant_and_emits(kit, registry, owner, stranger):
    device = kit.new_device(owner=owner)
    registry.grantPermissions(device.id, stranger, OPERATE, kit.now() + DAY, sender=owner)
    receipt = registry.revokePermissions(device.id, stranger, sender=owner)
    assert_single_event(receipt, registry.PermissionsRevoked, deviceId=device.id, grantee=stranger.address)
    assert tuple(registry.grantOf(device.id, stranger)) == (0, 0, False)
    assert not registry.hasPermission(device.id, stranger, OPERATE)


def test_revoke_by_non_owner_reverts(kit, registry, owner, stranger):
    device = kit.new_device(owner=owner)
    registry.grantPermissions(device.id, stranger, OPERATE, kit.now() + DAY, sender=owner)
    with reverts(registry.NotDeviceOwner, deviceId=device.id, caller=stranger.address):
        registry.revokePermissions(device.id, stranger, sender=stranger)
    assert registry.hasPermission(device.id, stranger, OPERATE)


def test_revoke_on_unknown_device_reverts(registry, owner, stranger):
    with reverts(registry.UnknownDevice, deviceId=999):
        registry.revokePermissions(999, stranger, sender=owner)


def test_has_permission_needs_every_requested_bit(kit, registry, owner, stranger):
    device = kit.new_device(owner=owner)
    registry.grantPermissions(device.id, stranger, OPERATE | READ_DATA, kit.now() + DAY, sender=owner)
    assert registry.hasPermission(device.id, stranger, OPERATE)
    assert registry.hasPermission(device.id, stranger, READ_DATA)
    assert registry.hasPermission(device.id, stranger, OPERATE | READ_DATA)
    assert not registry.hasPermission(device.id, stranger, OPERATE | RELEASE)
    assert not registry.hasPermission(device.id, stranger, RELEASE)
    assert not registry.hasPermission(device.id, stranger, SERVICE)
    assert not registry.hasPermission(device.id, stranger, 0)  # asking for nothing is never granted


def test_owner_holds_every_permission_and_others_none(kit, registry, owner, stranger):
    device = kit.new_device(owner=owner)
    for bits in (OPERATE, READ_DATA, RELEASE, SERVICE, OPERATE | RELEASE | SERVICE, 1 << 63, 2**64 - 1):
        assert registry.hasPermission(device.id, owner, bits)
        assert not registry.hasPermission(device.id, stranger, bits)
    assert not registry.hasPermission(device.id, owner, 0)
    assert not registry.hasPermission(31337, owner, OPERATE)  # unknown device


def test_grant_expires_after_expiry_timestamp(kit, registry, owner, stranger):
    device = kit.new_device(owner=owner)
    expires = kit.now() + 1000
    registry.grantPermissions(device.id, stranger, OPERATE, expires, sender=owner)
    kit.mine_at(expires)
    assert registry.hasPermission(device.id, stranger, OPERATE)  # still valid at expiresAt
    assert registry.grantOf(device.id, stranger).live
    kit.mine_at(expires + 1)
    assert not registry.hasPermission(device.id, stranger, OPERATE)
    assert tuple(registry.grantOf(device.id, stranger)) == (OPERATE, expires, False)


def test_grant_dies_on_transfer_even_when_token_returns(kit, registry, owner, stranger, seller):
    device = kit.new_device(owner=owner)
    expires = kit.now() + DAY
    registry.grantPermissions(device.id, stranger, OPERATE, expires, sender=owner)
    registry.transferFrom(owner, seller, device.id, sender=owner)
    assert not registry.hasPermission(device.id, stranger, OPERATE)
    assert tuple(registry.grantOf(device.id, stranger)) == (OPERATE, expires, False)
    registry.transferFrom(seller, owner, device.id, sender=seller)  # back to the granting owner
    assert registry.ownerOf(device.id) == owner.address
    assert not registry.hasPermission(device.id, stranger, OPERATE)
    assert not registry.grantOf(device.id, stranger).live
    # A new grant lives in the new epoch.
    receipt = registry.grantPermissions(device.id, stranger, OPERATE, expires, sender=owner)
    assert_single_event(receipt, registry.PermissionsGranted, epoch=registry.getDevice(device.id).epoch)
    assert registry.getDevice(device.id).epoch == 3
    assert registry.hasPermission(device.id, stranger, OPERATE)


def test_suspended_device_answers_false_and_grant_returns_on_resume(kit, registry, owner, stranger):
    device = kit.new_device(owner=owner)
    registry.grantPermissions(device.id, stranger, OPERATE, kit.now() + DAY, sender=owner)
    registry.suspend(device.id, sender=owner)
    assert not registry.hasPermission(device.id, stranger, OPERATE)
    assert not registry.hasPermission(device.id, owner, OPERATE)
    assert not registry.grantOf(device.id, stranger).live
    registry.resume(device.id, sender=owner)
    assert registry.hasPermission(device.id, stranger, OPERATE)
    assert registry.grantOf(device.id, stranger).live


def test_decommission_kills_existing_grants(kit, registry, owner, stranger):
    device = kit.new_device(owner=owner)
    registry.grantPermissions(device.id, stranger, OPERATE, kit.now() + DAY, sender=owner)
    registry.decommission(device.id, sender=owner)
    assert not registry.hasPermission(device.id, stranger, OPERATE)
    assert not registry.grantOf(device.id, stranger).live


def test_grant_of_unknown_pair_is_all_zero(kit, registry, owner, stranger):
    device = kit.new_device(owner=owner)
    assert tuple(registry.grantOf(device.id, stranger)) == (0, 0, False)
    assert tuple(registry.grantOf(4242, stranger)) == (0, 0, False)


# =========================================================================== device-signed actions


def test_use_device_action_consumes_nonce_and_emits(kit, registry, owner, stranger):
    device = kit.new_device(owner=owner)
    nonce = registry.getDevice(device.id).nonce
    assert nonce == 1  # provisioning consumed nonce 0
    # The target is the calling account; the device only signs.
    deadline, sig = kit.action_signature(device, stranger.address, ACTION)
    receipt = registry.useDeviceAction(device.id, ACTION, deadline, sig, sender=stranger)
    assert_single_event(
        receipt, registry.DeviceActionExecuted, deviceId=device.id, target=stranger.address, actionHash=ACTION, nonce=nonce
    )
    assert registry.getDevice(device.id).nonce == nonce + 1


def test_use_device_action_replay_is_refused(kit, registry, owner, stranger):
    device = kit.new_device(owner=owner)
    deadline, sig = kit.action_signature(device, stranger.address, ACTION)
    registry.useDeviceAction(device.id, ACTION, deadline, sig, sender=stranger)
    with reverts(registry.InvalidDeviceSignature, deviceId=device.id):
        registry.useDeviceAction(device.id, ACTION, deadline, sig, sender=stranger)
    assert registry.getDevice(device.id).nonce == 2


def test_use_device_action_for_another_target_is_refused(kit, registry, sales, owner, stranger):
    device = kit.new_device(owner=owner)
    deadline, sig = kit.action_signature(device, sales.address, ACTION)  # signed for SalesOrder
    with reverts(registry.InvalidDeviceSignature, deviceId=device.id):
        registry.useDeviceAction(device.id, ACTION, deadline, sig, sender=stranger)


def test_use_device_action_for_another_action_is_refused(kit, registry, owner, stranger):
    device = kit.new_device(owner=owner)
    deadline, sig = kit.action_signature(device, stranger.address, ACTION)
    with reverts(registry.InvalidDeviceSignature, deviceId=device.id):
        registry.useDeviceAction(device.id, keccak(text="other"), deadline, sig, sender=stranger)


def test_use_device_action_with_future_nonce_is_refused(kit, registry, owner, stranger):
    device = kit.new_device(owner=owner)
    deadline, sig = kit.action_signature(device, stranger.address, ACTION, nonce=2)
    with reverts(registry.InvalidDeviceSignature, deviceId=device.id):
        registry.useDeviceAction(device.id, ACTION, deadline, sig, sender=stranger)


def test_use_device_action_signed_by_wrong_key_is_refused(kit, registry, owner, stranger):
    device = kit.new_device(owner=owner)
    deadline, sig = kit.action_signature(device, stranger.address, ACTION, key=Account.create())
    with reverts(registry.InvalidDeviceSignature, deviceId=device.id):
        registry.useDeviceAction(device.id, ACTION, deadline, sig, sender=stranger)


def test_use_device_action_signed_for_another_registry_or_chain_is_refused(kit, registry, registry2, owner, stranger, chain_id):
    device = kit.new_device(owner=owner)
    deadline, sig = kit.action_signature(device, stranger.address, ACTION, chain_id=chain_id + 1)
    with reverts(registry.InvalidDeviceSignature, deviceId=device.id):
        registry.useDeviceAction(device.id, ACTION, deadline, sig, sender=stranger)
    nonce = registry.getDevice(device.id).nonce
    msg = typed_data.device_action_message(chain_id, registry2.address, device.id, stranger.address, ACTION, nonce, deadline)
    with reverts(registry.InvalidDeviceSignature, deviceId=device.id):
        registry.useDeviceAction(device.id, ACTION, deadline, sign(device.key, msg), sender=stranger)


def test_use_device_action_refuses_high_s_twin(kit, registry, owner, stranger):
    device = kit.new_device(owner=owner)
    deadline, sig = kit.action_signature(device, stranger.address, ACTION)
    with reverts(registry.InvalidDeviceSignature, deviceId=device.id):
        registry.useDeviceAction(device.id, ACTION, deadline, to_high_s(sig), sender=stranger)
    registry.useDeviceAction(device.id, ACTION, deadline, sig, sender=stranger)


def test_use_device_action_with_old_key_after_rotation_is_refused(kit, registry, owner, stranger):
    device = kit.new_device(owner=owner)
    new_key = Account.create()
    # The old key signs for the nonce that will follow the rotation, which it cannot know is void.
    nonce_after = registry.getDevice(device.id).nonce + 1
    deadline, old_sig = kit.action_signature(device, stranger.address, ACTION, nonce=nonce_after)
    rdeadline, rsig = kit.rotate_signature(device, new_key)
    registry.rotateKey(device.id, new_key.address, rdeadline, rsig, sender=owner)
    with reverts(registry.InvalidDeviceSignature, deviceId=device.id):
        registry.useDeviceAction(device.id, ACTION, deadline, old_sig, sender=stranger)
    deadline, new_sig = kit.action_signature(device, stranger.address, ACTION, key=new_key)
    receipt = registry.useDeviceAction(device.id, ACTION, deadline, new_sig, sender=stranger)
    assert_single_event(receipt, registry.DeviceActionExecuted, deviceId=device.id, nonce=nonce_after)


@pytest.mark.parametrize("state", [PROVISIONED, SUSPENDED, DECOMMISSIONED])
def test_use_device_action_when_not_active_is_refused(kit, registry, owner, stranger, state):
    device = _device_in_state(kit, registry, owner, state)
    deadline, sig = kit.action_signature(device, stranger.address, ACTION)
    with reverts(registry.DeviceNotActive, deviceId=device.id, current=state):
        registry.useDeviceAction(device.id, ACTION, deadline, sig, sender=stranger)


def test_use_device_action_on_unknown_device_is_refused(kit, registry, stranger):
    with reverts(registry.DeviceNotActive, deviceId=5, current=NONE):
        registry.useDeviceAction(5, ACTION, kit.deadline(), b"\x00" * 65, sender=stranger)


def test_use_device_action_after_deadline_is_refused(kit, registry, owner, stranger):
    device = kit.new_device(owner=owner)
    deadline, sig = kit.action_signature(device, stranger.address, ACTION, deadline=kit.now() + 10)
    kit.warp(11)
    with reverts(registry.SignatureExpired, deadline=deadline):
        registry.useDeviceAction(device.id, ACTION, deadline, sig, sender=stranger)
    assert registry.getDevice(device.id).nonce == 1


# =========================================================================== rotateKey


def test_rotate_key_replaces_key_and_consumes_nonce(kit, registry, owner):
    device = kit.new_device(owner=owner)
    new_key = Account.create()
    before = registry.getDevice(device.id)
    deadline, sig = kit.rotate_signature(device, new_key)
    receipt = registry.rotateKey(device.id, new_key.address, deadline, sig, sender=owner)
    assert_single_event(
        receipt, registry.DeviceKeyRotated, deviceId=device.id, oldKey=device.key.address, newKey=new_key.address
    )
    after = registry.getDevice(device.id)
    assert after.key == new_key.address
    assert after.nonce == before.nonce + 1
    assert (after.state, after.epoch, after.warrantyEnd) == (before.state, before.epoch, before.warrantyEnd)
    assert registry.ownerOf(device.id) == owner.address  # the token id never changes
    assert registry.deviceIdOfKey(new_key.address) == device.id
    assert registry.deviceIdOfKey(device.key.address) == 0
    assert registry.isKeyUsed(new_key.address) and registry.isKeyUsed(device.key.address)


def test_rotate_key_twice_retires_intermediate_key(kit, registry, owner):
    device = kit.new_device(owner=owner)
    k2, k3 = Account.create(), Account.create()
    for k in (k2, k3):
        deadline, sig = kit.rotate_signature(device, k)
        registry.rotateKey(device.id, k.address, deadline, sig, sender=owner)
    assert registry.deviceIdOfKey(k2.address) == 0
    assert registry.deviceIdOfKey(k3.address) == device.id
    assert registry.getDevice(device.id).nonce == 3
    # k2 can never come back, to this device or any other.
    deadline, sig = kit.rotate_signature(device, k2)
    with reverts(registry.KeyAlreadyUsed, key=k2.address):
        registry.rotateKey(device.id, k2.address, deadline, sig, sender=owner)


def test_rotate_key_on_provisioned_device_by_approved_operator_reverts(kit, registry, manufacturer, stranger):
    device, _ = kit.provision()
    registry.approve(stranger, device.id, sender=manufacturer)
    new_key = Account.create()
    deadline, sig = kit.rotate_signature(device, new_key)
    with reverts(registry.NotDeviceOwner, deviceId=device.id, caller=stranger.address):
        registry.rotateKey(device.id, new_key.address, deadline, sig, sender=stranger)
    assert registry.getDevice(device.id).key == device.key.address
    # The owner (still the manufacturer) rotates with the very same signature.
    registry.rotateKey(device.id, new_key.address, deadline, sig, sender=manufacturer)
    assert registry.getDevice(device.id).key == new_key.address


def test_rotate_key_by_non_owner_reverts(kit, registry, owner, stranger):
    device = kit.new_device(owner=owner)
    new_key = Account.create()
    deadline, sig = kit.rotate_signature(device, new_key)
    with reverts(registry.NotDeviceOwner, deviceId=device.id, caller=stranger.address):
        registry.rotateKey(device.id, new_key.address, deadline, sig, sender=stranger)


def test_rotate_key_on_unknown_device_reverts(kit, registry, owner):
    with reverts(registry.UnknownDevice, deviceId=88):
        registry.rotateKey(88, Account.create().address, kit.deadline(), b"\x00" * 65, sender=owner)


def test_rotate_key_to_zero_address_reverts(kit, registry, owner):
    device = kit.new_device(owner=owner)
    with reverts(registry.ZeroAddress):
        registry.rotateKey(device.id, ZERO_ADDRESS, kit.deadline(), b"\x00" * 65, sender=owner)


def test_rotate_key_after_deadline_reverts(kit, registry, owner):
    device = kit.new_device(owner=owner)
    new_key = Account.create()
    deadline, sig = kit.rotate_signature(device, new_key, deadline=kit.now() + 10)
    kit.warp(11)
    with reverts(registry.SignatureExpired, deadline=deadline):
        registry.rotateKey(device.id, new_key.address, deadline, sig, sender=owner)


@pytest.mark.parametrize("which", ["own_current_key", "other_device_first_key", "key_rotated_into_other_device"])
def test_rotate_key_to_used_key_reverts(kit, registry, owner, which):
    device = kit.new_device(owner=owner)
    other = kit.new_device(owner=owner)
    if which == "own_current_key":
        key = device.key
    elif which == "other_device_first_key":
        key = other.key
    else:
        key = Account.create()
        deadline, sig = kit.rotate_signature(other, key)
        registry.rotateKey(other.id, key.address, deadline, sig, sender=owner)
    deadline, sig = kit.rotate_signature(device, key)
    with reverts(registry.KeyAlreadyUsed, key=key.address):
        registry.rotateKey(device.id, key.address, deadline, sig, sender=owner)


def test_rotate_key_signed_by_old_key_instead_of_new_reverts(kit, registry, owner):
    device = kit.new_device(owner=owner)
    new_key = Account.create()
    deadline, sig = kit.rotate_signature(device, new_key, signer=device.key)
    with reverts(registry.InvalidDeviceSignature, deviceId=device.id):
        registry.rotateKey(device.id, new_key.address, deadline, sig, sender=owner)
    assert registry.getDevice(device.id).key == device.key.address


def test_rotate_key_with_stale_nonce_reverts(kit, registry, owner, stranger):
    device = kit.new_device(owner=owner)
    new_key = Account.create()
    deadline, stale = kit.rotate_signature(device, new_key)  # signed for nonce 1
    adeadline, asig = kit.action_signature(device, stranger.address, ACTION)
    registry.useDeviceAction(device.id, ACTION, adeadline, asig, sender=stranger)  # nonce -> 2
    with reverts(registry.InvalidDeviceSignature, deviceId=device.id):
        registry.rotateKey(device.id, new_key.address, deadline, stale, sender=owner)


def test_rotate_key_signature_for_another_new_key_reverts(kit, registry, owner):
    device = kit.new_device(owner=owner)
    signed_key, submitted_key = Account.create(), Account.create()
    deadline, sig = kit.rotate_signature(device, signed_key)
    with reverts(registry.InvalidDeviceSignature, deviceId=device.id):
        registry.rotateKey(device.id, submitted_key.address, deadline, sig, sender=owner)


def test_rotate_key_refuses_high_s_twin(kit, registry, owner):
    device = kit.new_device(owner=owner)
    new_key = Account.create()
    deadline, sig = kit.rotate_signature(device, new_key)
    with reverts(registry.InvalidDeviceSignature, deviceId=device.id):
        registry.rotateKey(device.id, new_key.address, deadline, to_high_s(sig), sender=owner)


# =========================================================================== views and metadata


def test_warranty_active_until_warranty_end(kit, registry, owner):
    end = kit.now() + 1000
    device, _ = kit.provision(record=make_record(warrantyEnd=end))
    kit.mine_at(end)
    assert registry.warrantyActive(device.id)
    kit.mine_at(end + 1)
    assert not registry.warrantyActive(device.id)
    assert not registry.warrantyActive(123)  # unknown device


def test_warranty_ends_with_decommission(kit, registry, manufacturer):
    device, _ = kit.provision()
    assert registry.warrantyActive(device.id)
    registry.decommission(device.id, sender=manufacturer)
    assert not registry.warrantyActive(device.id)


def test_unknown_device_and_key_lookups_are_zero(registry):
    stored = registry.getDevice(424242)
    assert (stored.key, stored.state, stored.warrantyEnd, stored.nonce, stored.epoch) == (ZERO_ADDRESS, NONE, 0, 0, 0)
    assert registry.deviceIdOfKey(ZERO_ADDRESS) == 0
    assert registry.deviceIdOfKey(Account.create().address) == 0
    assert not registry.isKeyUsed(Account.create().address)
    assert not registry.isKeyUsed(ZERO_ADDRESS)


def test_set_base_uri_by_admin_changes_token_uri(kit, registry, admin):
    device, _ = kit.provision()
    assert registry.tokenURI(device.id) == ""
    receipt = registry.setBaseURI("https://devices.example.com/", sender=admin)
    assert_single_event(receipt, registry.BaseURIChanged, baseURI="https://devices.example.com/")
    assert registry.tokenURI(device.id) == f"https://devices.example.com/{device.id}"


def test_set_base_uri_by_non_admin_reverts(registry, stranger):
    with reverts(registry.AccessControlUnauthorizedAccount, account=stranger.address, neededRole=DEFAULT_ADMIN_ROLE):
        registry.setBaseURI("https://evil.example/", sender=stranger)


def test_token_uri_of_unknown_device_reverts(registry):
    with reverts(registry.ERC721NonexistentToken, tokenId=5):
        registry.tokenURI(5)


def test_revoke_of_absent_grant_still_emits(kit, registry, owner, stranger):
    device = kit.new_device(owner=owner)
    receipt = registry.revokePermissions(device.id, stranger, sender=owner)
    assert_single_event(receipt, registry.PermissionsRevoked, deviceId=device.id, grantee=stranger.address)
    assert_no_event(receipt, registry.PermissionsGranted)
