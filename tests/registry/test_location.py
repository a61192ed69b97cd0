"""Tests for mscomm_sync.registry.location: the default location and etcd:// locations."""

from __future__ import annotations

import pytest

from mscomm_sync.errors import ConfigurationError
from mscomm_sync.registry.location import (
    DEFAULT_PREFIX,
    ENV_REGISTRY,
    default_location,
    parse_location,
)

# -- default_location -------------------------------------------------------------------


def test_the_registry_variable_names_the_location() -> None:
    """MSCOMM_REGISTRY, when set, is the location, whatever XDG_STATE_HOME says."""
    environ = {ENV_REGISTRY: "etcd://127.0.0.1:2379", "XDG_STATE_HOME": "/srv/state"}
    assert ENV_REGISTRY == "MSCOMM_REGISTRY"
    assert default_location(environ) == "etcd://127.0.0.1:2379"


def test_the_registry_variable_is_stripped() -> None:
    """Spaces around MSCOMM_REGISTRY's value are not part of the location."""
    assert default_location({ENV_REGISTRY: "  /srv/registry.json\n"}) == "/srv/registry.json"


@pytest.mark.parametrize("blank", ["", "   "], ids=["empty", "spaces"])
def test_a_blank_registry_variable_is_ignored(blank: str) -> None:
    """An empty or blank MSCOMM_REGISTRY falls back to the per-user default."""
    environ = {ENV_REGISTRY: blank, "XDG_STATE_HOME": "/srv/state"}
    assert default_location(environ) == "/srv/state/mscomm/registry.json"


def test_default_location_falls_back_to_the_user_state_directory() -> None:
    """Without MSCOMM_REGISTRY the default is under XDG_STATE_HOME."""
    location = default_location({"XDG_STATE_HOME": "/srv/state"})
    assert location == "/srv/state/mscomm/registry.json"


def test_default_location_without_xdg_is_under_home(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without XDG_STATE_HOME the default is ~/.local/state/mscomm/registry.json."""
    monkeypatch.setenv("HOME", "/home/someone")
    assert default_location({}) == "/home/someone/.local/state/mscomm/registry.json"


def test_a_blank_state_directory_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """A blank XDG_STATE_HOME means its default, ~/.local/state."""
    monkeypatch.setenv("HOME", "/home/someone")
    expected = "/home/someone/.local/state/mscomm/registry.json"
    assert default_location({"XDG_STATE_HOME": " "}) == expected


def test_the_process_environment_is_read_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without an environ argument, os.environ is read."""
    monkeypatch.setenv(ENV_REGISTRY, "/srv/from-process.json")
    assert default_location() == "/srv/from-process.json"


# -- parse_location -------------------------------------------------------------------------


def test_location_gives_endpoints_and_prefix() -> None:
    """etcd://h:p,h:p/prefix names every member and the key prefix."""
    assert parse_location("etcd://127.0.0.1:2379,127.0.0.1:2380/apps/prod") == (
        ["http://127.0.0.1:2379", "http://127.0.0.1:2380"],
        "/apps/prod",
    )


def test_location_without_prefix_uses_the_default() -> None:
    """A location with no path uses the documented default prefix."""
    assert parse_location("etcd://127.0.0.1:2379") == (["http://127.0.0.1:2379"], DEFAULT_PREFIX)


@pytest.mark.parametrize("location", ["etcd://", "etcd://127.0.0.1", "etcd://:2379", "etcd://h:x"])
def test_malformed_locations_are_refused(location: str) -> None:
    """A location without host and numeric port is a configuration error."""
    with pytest.raises(ConfigurationError):
        parse_location(location)


def test_the_prefix_loses_surrounding_slashes() -> None:
    """A prefix is written with one leading slash and no trailing one."""
    assert parse_location("etcd://127.0.0.1:2379/apps/prod/")[1] == "/apps/prod"
    assert parse_location("etcd://127.0.0.1:2379//apps//")[1] == "/apps"


def test_a_bare_slash_is_the_default_prefix() -> None:
    """etcd://host:port/ names no prefix, so the default one applies."""
    assert parse_location("etcd://127.0.0.1:2379/")[1] == DEFAULT_PREFIX == "/mscomm"


def test_spaces_around_hosts_are_ignored() -> None:
    """Each host:port is stripped before it is checked."""
    endpoints, _ = parse_location("etcd:// 127.0.0.1:2379 , 127.0.0.1:2380/p")
    assert endpoints == ["http://127.0.0.1:2379", "http://127.0.0.1:2380"]


def test_an_ipv6_member_is_accepted() -> None:
    """A bracketed IPv6 address with a port is a member."""
    assert parse_location("etcd://[::1]:2379")[0] == ["http://[::1]:2379"]


@pytest.mark.parametrize(
    "location",
    [
        "/srv/registry.json",
        "http://127.0.0.1:2379",
        "ETCD://127.0.0.1:2379",
        "etcd://127.0.0.1:2379,,127.0.0.1:2380",
        "etcd://127.0.0.1:2379,127.0.0.1",
        "etcd://127.0.0.1:99999",
        "etcd://127.0.0.1:1:2",
    ],
    ids=["file", "http", "upper-case", "empty-member", "one-portless", "port-range", "two-ports"],
)
def test_other_malformed_locations_are_refused(location: str) -> None:
    """Anything but etcd:// followed by host:port members is a bad location."""
    with pytest.raises(ConfigurationError) as raised:
        parse_location(location)
    assert raised.value.reason == "bad location"


@pytest.mark.parametrize("location", ["etcd://127.0.0.1:2379?x=1", "etcd://127.0.0.1:2379#f"])
def test_a_member_with_a_query_or_fragment_is_refused(location: str) -> None:
    """A member is host:port only: a query or fragment after it is a bad location."""
    with pytest.raises(ConfigurationError):
        parse_location(location)


def test_etcd_location_with_credentials_is_refused_without_echoing_them() -> None:
    """An etcd:// location with user:password@ is refused, and the password is not echoed."""
    with pytest.raises(ConfigurationError) as info:
        parse_location("etcd://root:hunter2-secret@127.0.0.1:2379/x")
    assert "hunter2" not in str(info.value)
    assert (info.value.variable, info.value.reason) == (ENV_REGISTRY, "credentials in location")
