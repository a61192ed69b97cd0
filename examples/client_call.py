"""orders calls billing by name, sealed both ways.

ORDERS_PRIVATE_KEY_FILE=$PWD/keys/orders.key python examples/client_call.py
"""

# [start call]
from mscomm_sync import MicroServiceClient, initialize_registry

registry = initialize_registry()  # $MSCOMM_REGISTRY
client = MicroServiceClient("orders", registry=registry)
resp = client.request(
    target_service="billing", endpoint="/api/v1/charge", method="POST", payload={"amount": 42}
)
print(resp.status_code, resp.json())  # 200 {'caller': 'orders', 'charged': 42}
# [end call]
