import ape
from conftest import *

def test_explore(kit, registry, sales, manufacturer, stranger, seller, buyer, gate, chain):
    d, r = kit.provision()
    logs = event_logs(r, registry.DeviceProvisioned)
    print("LOG", logs[0].event_arguments, type(logs[0].event_arguments["record"]))
    print("DEV", registry.getDevice(d.id))
    try:
        kit.provision(key=d.key)
    except Exception as e:
        print("ERR1", type(e), repr(e), type(e).__mro__, getattr(e, "inputs", None))
    print(type(registry.KeyAlreadyUsed), registry.KeyAlreadyUsed.abi)
    # nested error: createOrder with device not approved
    try:
        kit.create_order(manufacturer, device_id=d.id)
    except Exception as e:
        print("ERR2", type(e), repr(e), getattr(e, "abi", None))
    registry.decommission(d.id, sender=manufacturer)
    registry.approve(sales, d.id, sender=manufacturer)
    try:
        kit.create_order(manufacturer, device_id=d.id)
    except Exception as e:
        print("ERR3", type(e), repr(e), getattr(e, "abi", None))
    print("TS", chain.pending_timestamp, chain.blocks.head.timestamp)
    print(chain.provider.name, chain.chain_id)
