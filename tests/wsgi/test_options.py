"""Tests for mscomm_sync.wsgi.options: the middleware's settings, validated once and frozen."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from mscomm_sync.envelope import DEFAULT_MAX_BODY_SIZE, DEFAULT_WINDOW
from mscomm_sync.errors import ConfigurationError
from mscomm_sync.wsgi.options import (
    DEFAULT_EXEMPT_PATHS,
    MIDDLEWARE_OPTIONS,
    MiddlewareOptions,
    reject_unknown_options,
    resolve_service_name,
)


def options(**changes: Any) -> MiddlewareOptions:
    """Options for the billing service, with some settings changed."""
    return MiddlewareOptions(service_name="billing", **changes)


# -- defaults and shape ----------------------------------------------------------------


def test_defaults_are_the_documented_ones() -> None:
    """Unless told otherwise: seal answers, require sealing, exempt /health, any caller,
    10 MiB bodies and a 60 s window."""
    built = options()
    assert built.encrypt_responses is True
    assert built.require_encryption is True
    assert built.exempt_paths == DEFAULT_EXEMPT_PATHS == frozenset({"/health"})
    assert built.allowed_callers is None
    assert built.max_body_size == DEFAULT_MAX_BODY_SIZE == 10 * 1024 * 1024
    assert built.replay_window == DEFAULT_WINDOW == 60


def test_options_are_frozen() -> None:
    """Built options cannot be changed in place."""
    built = options()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        built.require_encryption = False  # type: ignore[misc]


def test_options_are_keyword_only() -> None:
    """Options are given by name only."""
    with pytest.raises(TypeError):
        MiddlewareOptions("billing")  # type: ignore[misc]


def test_evolve_validates_the_new_value() -> None:
    """A variant made with attrs.evolve is checked like a new one."""
    with pytest.raises(ConfigurationError):
        attrs.evolve(options(), max_body_size=-1)


def test_option_names_are_the_fields_then_the_collaborators() -> None:
    """MIDDLEWARE_OPTIONS lists service_name first, every field, then the collaborators."""
    fields = [field.name for field in attrs.fields(MiddlewareOptions)]
    assert fields[0] == "service_name"
    collaborators = [
        "keyring", "identity", "trust", "replay_store", "idempotency", "clock", "telemetry",
    ]  # fmt: skip
    assert list(MIDDLEWARE_OPTIONS) == [*fields, *collaborators]


# -- validation --------------------------------------------------------------------------


BAD_VALUES = [
    ("encrypt_responses", "yes"),
    ("encrypt_responses", 1),
    ("encrypt_responses", None),
    ("require_encryption", "false"),
    ("require_encryption", 0),
    ("exempt_paths", "/health"),
    ("exempt_paths", b"/health"),
    ("exempt_paths", ["health"]),
    ("exempt_paths", [""]),
    ("exempt_paths", [b"/health"]),
    ("allowed_callers", "orders"),
    ("allowed_callers", b"orders"),
    ("max_body_size", -1),
    ("max_body_size", 1.5),
    ("max_body_size", True),
    ("max_body_size", "10"),
    ("max_body_size", None),
    ("replay_window", 0),
    ("replay_window", -1),
    ("replay_window", float("nan")),
    ("replay_window", True),
    ("replay_window", "60"),
    ("replay_window", None),
]


@pytest.mark.parametrize(("option", "value"), BAD_VALUES, ids=[f"{o}={v!r}" for o, v in BAD_VALUES])
def test_each_bad_value_is_a_configuration_error_naming_the_option(
    option: str, value: object
) -> None:
    """A bad value raises ConfigurationError whose ``variable`` names the option."""
    with pytest.raises(ConfigurationError) as raised:
        options(**{option: value})
    assert raised.value.variable == option


@pytest.mark.parametrize(("option", "value"), [("exempt_paths", "/"), ("allowed_callers", "a")])
def test_one_string_is_refused_even_if_its_characters_would_pass(option: str, value: str) -> None:
    """A single string is not taken as a collection of its characters."""
    with pytest.raises(ConfigurationError) as raised:
        options(**{option: value})
    assert (raised.value.variable, raised.value.reason) == (option, "not a collection")


@pytest.mark.parametrize("name", ["", "not a name", "-leading-dash", "x" * 129, None])
def test_an_invalid_service_name_is_refused(name: object) -> None:
    """The service name must be a valid name (1-128 of A-Z a-z 0-9 . _ -)."""
    with pytest.raises(ConfigurationError, match="service name"):
        MiddlewareOptions(service_name=name)  # type: ignore[arg-type]


@pytest.mark.parametrize("caller", ["", "not a name", None])
def test_an_invalid_allowed_caller_is_refused(caller: object) -> None:
    """Every allowed caller must be a valid service name; the message says which setting."""
    with pytest.raises(ConfigurationError, match="allowed caller"):
        options(allowed_callers=["orders", caller])


@pytest.mark.parametrize(
    ("option", "value"), [("exempt_paths", None), ("exempt_paths", 5), ("allowed_callers", 5)]
)
def test_a_value_that_is_no_collection_is_a_configuration_error(option: str, value: object) -> None:
    """exempt_paths or allowed_callers that is not a collection at all is a ConfigurationError."""
    with pytest.raises(ConfigurationError):
        options(**{option: value})


# -- accepted values -------------------------------------------------------------------------


def test_zero_max_body_size_is_kept() -> None:
    """max_body_size=0 is a real setting (empty bodies only), not a request for the default."""
    assert options(max_body_size=0).max_body_size == 0


def test_fractional_replay_window_is_kept() -> None:
    """A window below a second is a valid number of seconds."""
    assert options(replay_window=0.5).replay_window == 0.5


@pytest.mark.parametrize(
    "given",
    [["/a", "/b"], ("/a", "/b"), {"/a", "/b"}, (p for p in ["/a", "/b"])],
    ids=["list", "tuple", "set", "generator"],
)
def test_exempt_paths_become_a_frozenset(given: Any) -> None:
    """Any collection of paths becomes an immutable set of exactly those paths."""
    assert options(exempt_paths=given).exempt_paths == frozenset({"/a", "/b"})


def test_no_exempt_paths_is_kept_empty() -> None:
    """An empty collection exempts nothing (it is not replaced by the default /health)."""
    assert options(exempt_paths=[]).exempt_paths == frozenset()


def test_allowed_callers_become_a_frozenset() -> None:
    """Allowed callers given as a list become an immutable set."""
    assert options(allowed_callers=["orders", "shipping"]).allowed_callers == frozenset(
        {"orders", "shipping"}
    )


def test_an_empty_allowed_callers_allows_nobody_rather_than_anybody() -> None:
    """allowed_callers=[] stays an empty set (nobody), distinct from None (anybody)."""
    assert options(allowed_callers=[]).allowed_callers == frozenset()


# -- the service name ----------------------------------------------------------------------------


def test_resolve_service_name_prefers_the_given_name() -> None:
    """A name passed in wins over SERVICE_NAME."""
    assert resolve_service_name("billing", {"SERVICE_NAME": "orders"}) == "billing"


def test_resolve_service_name_reads_service_name_when_none_is_given() -> None:
    """Without a name, SERVICE_NAME from the given environment names the service."""
    assert resolve_service_name(None, {"SERVICE_NAME": "billing"}) == "billing"


@pytest.mark.parametrize("environ", [{}, {"SERVICE_NAME": ""}], ids=["unset", "empty"])
def test_resolve_service_name_without_any_name_names_the_variable(
    environ: dict[str, str],
) -> None:
    """With neither a name nor a non-empty SERVICE_NAME, the error names SERVICE_NAME."""
    with pytest.raises(ConfigurationError) as raised:
        resolve_service_name(None, environ)
    assert (raised.value.variable, raised.value.reason) == ("SERVICE_NAME", "missing")
    assert "SERVICE_NAME" in str(raised.value)


def test_resolve_service_name_checks_a_name_from_the_environment() -> None:
    """An invalid SERVICE_NAME is refused like an invalid name passed in."""
    with pytest.raises(ConfigurationError, match="service name"):
        resolve_service_name(None, {"SERVICE_NAME": "not a name"})


def test_an_empty_name_passed_in_is_refused_not_replaced() -> None:
    """An explicit empty name is invalid; it does not fall back to SERVICE_NAME."""
    with pytest.raises(ConfigurationError, match="service name"):
        resolve_service_name("", {"SERVICE_NAME": "billing"})


def test_build_reads_service_name_from_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """MiddlewareOptions.build(None, ...) takes SERVICE_NAME from os.environ."""
    monkeypatch.setenv("SERVICE_NAME", "billing")
    built = MiddlewareOptions.build(None, max_body_size=5)
    assert (built.service_name, built.max_body_size) == ("billing", 5)


# -- unknown options -------------------------------------------------------------------------------


def test_every_known_option_is_accepted() -> None:
    """reject_unknown_options accepts every name the middleware takes, and no names at all."""
    reject_unknown_options(MIDDLEWARE_OPTIONS)
    reject_unknown_options([])


def test_unknown_options_are_refused_and_listed_sorted() -> None:
    """Every unknown name is listed, sorted, in one ConfigurationError."""
    unknown = ["zeta", "encrypt_response", "mu", "alpha", "omega", "beta"]
    with pytest.raises(ConfigurationError) as raised:
        reject_unknown_options(["max_body_size", *unknown, "keyring"])
    assert raised.value.reason == "unknown option"
    assert str(raised.value).endswith(": " + ", ".join(sorted(unknown)))


@pytest.mark.parametrize(
    "name", ["X-Mscomm-Caller", "x-mscomm-anything", "X-Encryption-Service", "X-Mscomm-Seal"]
)
def test_outer_headers_cannot_name_the_protocols_own(name: str) -> None:
    """The envelope's headers are believed only from the seal: letting an outer one through
    is refused when configured, not silently ignored on each request."""
    with pytest.raises(ConfigurationError) as info:
        options(outer_headers=["X-Edge-Region", name])
    assert (info.value.variable, info.value.reason) == ("outer_headers", "protocol header")
    assert name.lower() in str(info.value)


def test_outer_headers_are_kept_lower_case() -> None:
    assert options(outer_headers=["X-Edge-Region"]).outer_headers == {"x-edge-region"}
