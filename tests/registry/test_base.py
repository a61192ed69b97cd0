"""Instance records and registration validation."""

from __future__ import annotations

import attrs
import pytest

from mscomm_sync.errors import ConfigurationError
from mscomm_sync.registry.base import make_instance


def test_trailing_slash_is_dropped_from_urls() -> None:
    """http://h:1/ and http://h:1 name the same instance."""
    assert make_instance("billing", "http://127.0.0.1:1/").url == "http://127.0.0.1:1"


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1", "127.0.0.1:80", "http://", "http://h/?q=1", "http://h/#f", ""]
)
def test_non_http_urls_are_refused(url: str) -> None:
    """Only http(s) URLs with a host and without query or fragment are accepted."""
    with pytest.raises(ConfigurationError):
        make_instance("billing", url)


@pytest.mark.parametrize("name", ["", "has space", "-leading", "a/b", "x" * 129])
def test_invalid_service_names_are_refused(name: str) -> None:
    """Service names follow the keyring's rules."""
    with pytest.raises(ConfigurationError):
        make_instance(name, "http://127.0.0.1:1")


def test_health_endpoint_must_be_a_path() -> None:
    """A health endpoint without a leading slash is refused."""
    with pytest.raises(ConfigurationError):
        make_instance("billing", "http://127.0.0.1:1", health_endpoint="health")


def test_metadata_must_be_json() -> None:
    """Metadata that JSON cannot hold is refused at registration."""
    with pytest.raises(ConfigurationError):
        make_instance("billing", "http://127.0.0.1:1", metadata={"x": object()})


def test_instances_are_frozen() -> None:
    """An instance record cannot be changed after it is made."""
    inst = make_instance("billing", "http://127.0.0.1:1")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        inst.healthy = False  # type: ignore[misc]


def test_metadata_is_a_read_only_copy() -> None:
    """Changing the dict given at registration, or the record's view, changes nothing."""
    given = {"zone": "a"}
    inst = make_instance("billing", "http://127.0.0.1:1", metadata=given)
    given["zone"] = "b"
    assert inst.metadata["zone"] == "a"
    with pytest.raises(TypeError):
        inst.metadata["zone"] = "c"  # type: ignore[index]


def test_health_url_joins_base_url_and_endpoint() -> None:
    """health_url is the URL the poller GETs."""
    inst = make_instance("billing", "http://127.0.0.1:1", health_endpoint="/ready")
    assert inst.health_url == "http://127.0.0.1:1/ready"


def test_instance_url_with_credentials_is_refused_without_echoing_them() -> None:
    """A URL with user:password@ is refused, and the password is not in the message."""
    from mscomm_sync.errors import ConfigurationError
    from mscomm_sync.registry.base import normalize_url

    with pytest.raises(ConfigurationError) as info:
        normalize_url("http://svc:hunter2-secret@127.0.0.1:8001")
    assert "hunter2" not in str(info.value)
    assert "credentials" in str(info.value)
