"""Read and tamper with the ``X-Mscomm-Seal`` header in tests.

The header is ``v=1;kid=<16 hex>;ts=<decimal>;id=<32 hex>;ct=<hex>``:
five ``name=value`` fields in that order, separated by ``;``. These helpers
parse it without trusting the package's own regex, so a test that checks the
wire format does not just agree with the code under test.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from mscomm_sync.envelope import HEADER_SEAL

#: The seal header's field names, in their one allowed order.
SEAL_FIELDS = ("v", "kid", "ts", "id", "ct")


def seal_fields(value: str) -> dict[str, str]:
    """Return the fields of a seal header value, in wire order.

    Raises:
        ValueError: ``value`` is not exactly the five fields, in order, each
            ``name=value`` (the values themselves are not checked).
    """
    pairs = [part.partition("=") for part in value.split(";")]
    names = tuple(name for name, _, _ in pairs)
    if names != SEAL_FIELDS or any(sep != "=" for _, sep, _ in pairs):
        raise ValueError(f"not a seal header: {value!r}")
    return {name: field for name, _, field in pairs}


def seal_value(fields: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """Return the seal header value of ``fields``, in the order given (no checks)."""
    items = fields.items() if isinstance(fields, Mapping) else fields
    return ";".join(f"{name}={value}" for name, value in items)


def replace_seal_field(value: str, name: str, new: str) -> str:
    """Return the seal header value ``value`` with field ``name`` set to ``new``, in place."""
    fields = seal_fields(value)
    if name not in fields:
        raise KeyError(name)
    fields[name] = new
    return seal_value(fields)


def with_seal_field(headers: Mapping[str, str], name: str, new: str) -> dict[str, str]:
    """Return a copy of ``headers`` whose seal header has field ``name`` set to ``new``."""
    out = dict(headers)
    out[HEADER_SEAL] = replace_seal_field(headers[HEADER_SEAL], name, new)
    return out


def with_seal(headers: Mapping[str, str], value: str) -> dict[str, str]:
    """Return a copy of ``headers`` whose seal header is replaced by ``value``."""
    out = dict(headers)
    out[HEADER_SEAL] = value
    return out
