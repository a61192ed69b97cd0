"""Settings every test runs under, as a deployment would set them.

The services the tests seal as are the callers every test service accepts
(``MSCOMM_CALLERS``): a service accepts no caller it was not told of. Tests
of that rule remove the variable themselves.
"""

from __future__ import annotations

import os
import tempfile

#: The senders the tests use.
TEST_CALLERS = "orders,shipping,alpha,carol,legacy,billing,billing-v2,other-service,ledger,worker"

os.environ.setdefault("MSCOMM_CALLERS", TEST_CALLERS)
# Services that honour idempotency keys keep them here, never in the user's home.
os.environ.setdefault(
    "MSCOMM_IDEMPOTENCY_DB",
    os.path.join(tempfile.mkdtemp(prefix="mscomm-tests-"), "idempotency.sqlite3"),
)
