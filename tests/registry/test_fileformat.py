"""Tests for mscomm_sync.registry.fileformat: the registry document, encoded and checked."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest

from mscomm_sync.registry.base import Instance, make_instance
from mscomm_sync.registry.fileformat import (
    SCHEMA_VERSION,
    DocumentError,
    decode,
    decode_entry,
    empty_document,
    encode,
)

BILLING = make_instance(
    "billing", "http://127.0.0.1:8001", health_endpoint="/ready", metadata={"zone": "é-1"}
)
BILLING_2 = make_instance("billing", "http://127.0.0.1:8002")
ORDERS = make_instance("orders", "https://orders.internal", metadata={"n": [1, {"x": None}]})


def document(services: Any, schema: Any = SCHEMA_VERSION) -> bytes:
    """The bytes of a document with these services (and schema)."""
    return json.dumps({"schema": schema, "services": services}).encode()


# -- encode --------------------------------------------------------------------------------


def test_encode_then_decode_gives_the_instances_back() -> None:
    """Every instance survives a round trip: service, url, endpoint and metadata."""
    assert decode(encode([BILLING, ORDERS, BILLING_2])) == [BILLING, BILLING_2, ORDERS]


def test_encode_writes_the_schema_and_services_grouped_and_sorted() -> None:
    """The document has the schema version and services sorted by name, each group in order."""
    doc = json.loads(encode([ORDERS, BILLING_2, BILLING]))
    assert doc["schema"] == SCHEMA_VERSION == 1
    assert list(doc["services"]) == ["billing", "orders"]
    assert [entry["url"] for entry in doc["services"]["billing"]] == [BILLING_2.url, BILLING.url]
    assert doc["services"]["billing"][1] == {
        "url": "http://127.0.0.1:8001",
        "health_endpoint": "/ready",
        "metadata": {"zone": "é-1"},
    }


def test_encode_puts_each_instance_on_its_own_line() -> None:
    """Each instance is one line of the file, so a diff shows one changed instance."""
    lines = encode([BILLING, BILLING_2, ORDERS]).decode().splitlines()
    for inst in (BILLING, BILLING_2, ORDERS):
        assert sum(json.dumps(inst.url) in line for line in lines) == 1


def test_encode_is_utf8_text_ending_in_a_newline() -> None:
    """The document is UTF-8 (non-ASCII kept readable, not escaped) and ends with a newline."""
    data = encode([BILLING])
    assert data.endswith(b"}\n")
    assert "é-1".encode() in data


def test_health_verdicts_are_not_written() -> None:
    """An instance judged unhealthy is written without that verdict and reads back healthy."""
    data = encode([attrs.evolve(BILLING, healthy=False)])
    assert b"healthy" not in data.replace(b"health_endpoint", b"")
    assert decode(data)[0].healthy is True


def test_the_empty_document_has_no_services() -> None:
    """empty_document() is the current schema with an empty services object."""
    assert json.loads(empty_document()) == {"schema": SCHEMA_VERSION, "services": {}}
    assert decode(empty_document()) == []


# -- decode ----------------------------------------------------------------------------------


def test_decode_keeps_file_order() -> None:
    """Instances come back in the order the file lists them, not sorted."""
    data = document(
        {
            "orders": [{"url": "http://127.0.0.1:2"}],
            "billing": [{"url": "http://127.0.0.1:9"}, {"url": "http://127.0.0.1:1"}],
        }
    )
    assert [(i.service, i.url) for i in decode(data)] == [
        ("orders", "http://127.0.0.1:2"),
        ("billing", "http://127.0.0.1:9"),
        ("billing", "http://127.0.0.1:1"),
    ]


def test_decode_fills_in_the_defaults() -> None:
    """An entry with only a url gets the /health endpoint, empty metadata, and is healthy."""
    [inst] = decode(document({"billing": [{"url": "http://127.0.0.1:1"}]}))
    assert (inst.health_endpoint, dict(inst.metadata), inst.healthy) == ("/health", {}, True)


def test_decode_drops_a_trailing_slash_from_urls() -> None:
    """URLs are normalised as at registration: http://h:1/ is http://h:1."""
    [inst] = decode(document({"billing": [{"url": "http://127.0.0.1:1/"}]}))
    assert inst.url == "http://127.0.0.1:1"


def test_decoded_metadata_is_read_only() -> None:
    """Metadata read from the file cannot be changed through the record."""
    [inst] = decode(document({"billing": [{"url": "http://127.0.0.1:1", "metadata": {"a": 1}}]}))
    with pytest.raises(TypeError):
        inst.metadata["a"] = 2  # type: ignore[index]


def test_decode_entry_builds_one_instance() -> None:
    """decode_entry turns one JSON entry of a service into its instance."""
    entry = {"url": "http://127.0.0.1:1", "health_endpoint": "/ready", "metadata": {"k": "v"}}
    inst = decode_entry("billing", entry)
    assert isinstance(inst, Instance)
    assert (inst.service, inst.url, inst.health_endpoint, dict(inst.metadata)) == (
        "billing",
        "http://127.0.0.1:1",
        "/ready",
        {"k": "v"},
    )


def test_a_document_error_is_a_value_error() -> None:
    """Callers that catch ValueError catch a bad document."""
    assert issubclass(DocumentError, ValueError)


BAD_DOCUMENTS = {
    "invalid-utf8": (b'{"schema": 1, "services": {"\xff": []}}', "not valid JSON"),
    "not-json": (b'{"schema": 1, "services": {', "not valid JSON"),
    "top-level-list": (b"[]", "no 'services' object"),
    "no-services": (b'{"schema": 1}', "no 'services' object"),
    "services-a-list": (b'{"schema": 1, "services": []}', "no 'services' object"),
    "no-schema": (b'{"services": {}}', "unsupported schema version None"),
    "newer-schema": (document({}, schema=2), "unsupported schema version 2"),
    "schema-as-text": (document({}, schema="1"), "unsupported schema version '1'"),
    "bad-service-name": (document({"not a name": []}), "invalid service name 'not a name'"),
    "entries-not-a-list": (document({"billing": {}}), "expected a list of instances"),
    "entry-not-an-object": (document({"billing": ["http://h:1"]}), "needs a 'url' string"),
    "no-url": (document({"billing": [{}]}), "needs a 'url' string"),
    "url-not-text": (document({"billing": [{"url": 8001}]}), "needs a 'url' string"),
    "endpoint-not-a-path": (
        document({"billing": [{"url": "http://h:1", "health_endpoint": "health"}]}),
        "'health_endpoint' must be a path",
    ),
    "endpoint-not-text": (
        document({"billing": [{"url": "http://h:1", "health_endpoint": 1}]}),
        "'health_endpoint' must be a path",
    ),
    "metadata-not-an-object": (
        document({"billing": [{"url": "http://h:1", "metadata": []}]}),
        "'metadata' must be an object",
    ),
    "url-not-http": (document({"billing": [{"url": "ftp://h:1"}]}), "invalid instance URL"),
}


@pytest.mark.parametrize("case", sorted(BAD_DOCUMENTS))
def test_a_malformed_document_is_refused_saying_why(case: str) -> None:
    """Each kind of malformed document raises DocumentError with a message naming the fault."""
    data, says = BAD_DOCUMENTS[case]
    with pytest.raises(DocumentError) as raised:
        decode(data)
    assert says in str(raised.value)


def test_an_entry_error_names_its_service() -> None:
    """A malformed entry's message names the service it belongs to."""
    with pytest.raises(DocumentError, match="service 'billing'"):
        decode(document({"orders": [{"url": "http://h:1"}], "billing": [{"url": 1}]}))


def test_a_url_with_credentials_is_refused_without_echoing_them() -> None:
    """An entry whose url carries user:password@ is refused; the password is not in the message."""
    with pytest.raises(DocumentError) as raised:
        decode(document({"billing": [{"url": "http://svc:hunter2-secret@127.0.0.1:1"}]}))
    assert "credentials" in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_the_json_error_is_kept_as_the_cause() -> None:
    """A document that is not JSON raises DocumentError from the parser's own error."""
    with pytest.raises(DocumentError) as raised:
        decode(b"not json")
    assert isinstance(raised.value.__cause__, ValueError)
