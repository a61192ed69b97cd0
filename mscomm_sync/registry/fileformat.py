"""The registry file: one JSON document with a schema version.

Example::

    {
      "schema": 1,
      "services": {
        "billing": [
          {"url": "http://127.0.0.1:8001", "health_endpoint": "/health", "metadata": {}}
        ]
      }
    }
"""

from __future__ import annotations

import json
import types
from collections.abc import Iterable
from typing import Any

from ..errors import ConfigurationError
from ..keyring import validate_service_name
from .base import DEFAULT_HEALTH_ENDPOINT, Instance, normalize_url

__all__ = ["SCHEMA_VERSION", "DocumentError", "decode", "decode_entry", "empty_document", "encode"]

#: The schema version this code reads and writes.
SCHEMA_VERSION = 1


class DocumentError(ValueError):
    """The bytes are not a registry document this version understands."""


def empty_document() -> bytes:
    """Return the bytes of a registry with no services."""
    return encode([])


def encode(instances: Iterable[Instance]) -> bytes:
    """Return the document holding ``instances``, grouped by service and sorted by name.

    Each instance sits on its own line, so the file stays readable and diffable
    while the standard library's fast C encoder does the work.
    """
    services: dict[str, list[str]] = {}
    for inst in instances:
        entry = {
            "url": inst.url,
            "health_endpoint": inst.health_endpoint,
            "metadata": dict(inst.metadata),
        }
        services.setdefault(inst.service, []).append(json.dumps(entry, ensure_ascii=False))
    blocks = [
        f"    {json.dumps(name)}: [\n      " + ",\n      ".join(entries) + "\n    ]"
        for name, entries in sorted(services.items())
    ]
    body = "{\n" + ",\n".join(blocks) + "\n  }" if blocks else "{}"
    return f'{{\n  "schema": {SCHEMA_VERSION},\n  "services": {body}\n}}\n'.encode()


def decode(data: bytes) -> list[Instance]:
    """Parse and validate a registry document.

    Args:
        data: the file's bytes.

    Returns:
        Every instance in the document, in file order.

    Raises:
        DocumentError: the bytes are not valid JSON, the schema version is
            unknown, or an entry is malformed.
    """
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise DocumentError(f"not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
        raise DocumentError("not a registry document (no 'services' object)")
    schema = doc.get("schema")
    if schema != SCHEMA_VERSION:
        raise DocumentError(f"unsupported schema version {schema!r} (expected {SCHEMA_VERSION})")
    instances: list[Instance] = []
    for name, entries in doc["services"].items():
        try:
            validate_service_name(name)
        except ConfigurationError as exc:
            raise DocumentError(f"invalid service name {name!r}") from exc
        if not isinstance(entries, list):
            raise DocumentError(f"service {name!r}: expected a list of instances")
        for entry in entries:
            instances.append(decode_entry(name, entry))
    return instances


def decode_entry(name: str, entry: Any) -> Instance:
    """Return the instance that one JSON entry of service ``name`` describes.

    Raises:
        DocumentError: the entry is malformed.
    """
    if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
        raise DocumentError(f"service {name!r}: every instance needs a 'url' string")
    endpoint = entry.get("health_endpoint", DEFAULT_HEALTH_ENDPOINT)
    metadata = entry.get("metadata", {})
    if not isinstance(endpoint, str) or not endpoint.startswith("/"):
        raise DocumentError(f"service {name!r}: 'health_endpoint' must be a path")
    if not isinstance(metadata, dict):
        raise DocumentError(f"service {name!r}: 'metadata' must be an object")
    try:
        url = normalize_url(entry["url"])
    except ConfigurationError as exc:
        raise DocumentError(f"service {name!r}: {exc}") from exc
    return Instance(
        service=name,
        url=url,
        health_endpoint=endpoint,
        metadata=types.MappingProxyType(metadata),
    )
