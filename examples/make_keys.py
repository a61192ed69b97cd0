"""Make a key pair for each service, and the trust file that names their public keys.

    python examples/make_keys.py keys

writes, in the folder ``keys``:

* ``<service>.key``: that service's private key (mode 0600). Give it to that
  service alone, as ``<SERVICE>_PRIVATE_KEY_FILE`` (or its contents as
  ``<SERVICE>_PRIVATE_KEY``);
* ``trust.json``: every service's public key and who may call whom. It holds
  no secret; every service reads the same file, named by ``MSCOMM_TRUST``.

A folder that already holds keys is left as it is. ``mscomm keygen`` and
``mscomm trust`` do the same from the shell.
"""

from __future__ import annotations

import json
import os
import sys

from mscomm_sync.trust import generate_private_key
from mscomm_sync.trust.document import FORMAT, SCHEMA, parse

# Who may call whom: billing accepts calls from orders; nobody calls orders.
CALLERS = {"billing": ["orders"], "orders": []}


def main(folder: str) -> None:
    if os.path.exists(os.path.join(folder, "trust.json")):
        # Never overwrite a private key: a service would lose its identity.
        print(f"{folder}/ already holds keys: kept them (remove it to make new ones)")
        return
    os.makedirs(folder, exist_ok=True)
    services = {}
    for name, callers in CALLERS.items():
        key = generate_private_key()
        path = os.path.join(folder, f"{name}.key")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key.text() + "\n")
        public = {"id": key.kid, "public_key": key.public.text}
        services[name] = {"callers": callers, "keys": [public]}
    document = {"format": FORMAT, "version": SCHEMA, "serial": 1, "services": services}
    data = json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"
    parse(data)  # the library's own check of the format
    with open(os.path.join(folder, "trust.json"), "wb") as f:
        f.write(data)
    print(f"wrote {', '.join(f'{n}.key' for n in CALLERS)} and trust.json in {folder}/")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "keys")
