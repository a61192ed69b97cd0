"""Tests for mscomm_sync.errors: one base, familiar extra bases, structured fields, safe text."""

from __future__ import annotations

import pytest
import requests

from mscomm_sync import errors
from mscomm_sync.errors import (
    CircuitOpenError,
    ConfigurationError,
    DeadlineExceededError,
    InsecureResponseError,
    IntegrityError,
    MscommError,
    RegistryError,
    RequestRejectedError,
    ServiceNotFoundError,
    ServiceUnavailableError,
)

#: Stands for key material or plaintext that reached an error's arguments.
SECRET = "k3y-MATERIAL-0xDEADBEEF"


def test_every_error_is_an_mscomm_error() -> None:
    """Every exception the module exports derives from MscommError, and every one it
    defines is exported."""
    exported = {
        value
        for value in (getattr(errors, name) for name in errors.__all__)
        if isinstance(value, type) and issubclass(value, BaseException)
    }
    defined = {
        value
        for value in vars(errors).values()
        if isinstance(value, type)
        and issubclass(value, BaseException)
        and value.__module__ == errors.__name__
    }
    assert exported == defined
    for cls in exported:
        assert issubclass(cls, MscommError), cls


@pytest.mark.parametrize(
    ("error", "base"),
    [
        (ConfigurationError("bad", variable="X"), ValueError),
        (ServiceNotFoundError("billing"), LookupError),
        (ServiceUnavailableError("billing", 3), requests.ConnectionError),
        (DeadlineExceededError("billing", 2.5), requests.Timeout),
    ],
    ids=["configuration-value", "not-found-lookup", "unavailable-connection", "deadline-timeout"],
)
def test_errors_also_have_their_documented_familiar_base(error: MscommError, base: type) -> None:
    """Each error with a familiar meaning is also caught by that familiar base."""
    with pytest.raises(base):
        raise error


def test_transport_errors_are_caught_as_requests_exceptions() -> None:
    """Code that catches requests.RequestException also catches unavailability and deadlines."""
    for error in (ServiceUnavailableError("billing", 1), DeadlineExceededError("billing", 1.0)):
        with pytest.raises(requests.RequestException):
            raise error


def test_errors_without_a_familiar_meaning_have_no_familiar_base() -> None:
    """Integrity, registry, circuit and rejection errors are not ValueError or LookupError."""
    for cls in (IntegrityError, RegistryError, CircuitOpenError, RequestRejectedError):
        assert not issubclass(cls, (ValueError, LookupError, requests.RequestException)), cls


def test_configuration_error_carries_variable_and_reason() -> None:
    """ConfigurationError keeps its message, the variable named and the reason."""
    error = ConfigurationError("BILLING_ENCRYPTION_KEY is malformed", variable="X", reason="short")
    assert (str(error), error.variable, error.reason) == (
        "BILLING_ENCRYPTION_KEY is malformed",
        "X",
        "short",
    )


def test_configuration_error_variable_defaults_to_none() -> None:
    """A value passed directly (not from a variable) leaves ``variable`` None."""
    error = ConfigurationError("bad")
    assert (error.variable, error.reason) == (None, "")


def test_registry_error_carries_location_and_reason() -> None:
    """RegistryError keeps the location involved and what went wrong."""
    error = RegistryError("cannot read", location="/srv/registry.json", reason="corrupt")
    assert (error.location, error.reason) == ("/srv/registry.json", "corrupt")


def test_service_not_found_names_the_service() -> None:
    """ServiceNotFoundError keeps the name looked up and names it in its message."""
    error = ServiceNotFoundError("billing")
    assert (error.service, error.registry) == ("billing", None)
    assert str(error) == "no instances registered for service 'billing'"


def test_service_not_found_names_the_registry_read_and_how_to_list_it() -> None:
    """With the registry's location, the message names it and the command that lists it."""
    error = ServiceNotFoundError("billing", "etcd://127.0.0.1:2379/mscomm")
    assert error.registry == "etcd://127.0.0.1:2379/mscomm"
    text = str(error)
    assert "'billing' in registry etcd://127.0.0.1:2379/mscomm" in text
    assert "mscomm registry list --registry etcd://127.0.0.1:2379/mscomm" in text
    assert "$MSCOMM_REGISTRY" in text


def test_service_unavailable_carries_attempts_and_the_last_error() -> None:
    """ServiceUnavailableError keeps the service, the attempt count and the last failure."""
    last = requests.ConnectTimeout("slow")
    error = ServiceUnavailableError("billing", 3, last)
    assert (error.service, error.attempts, error.last_error) == ("billing", 3, last)
    assert error.reason == "ConnectTimeout"
    assert str(error) == "service 'billing' unavailable after 3 attempt(s): ConnectTimeout"


def test_service_unavailable_without_a_failure_says_no_attempt_was_possible() -> None:
    """With no last error and no reason, the reason is "no attempt possible"."""
    error = ServiceUnavailableError("billing", 0)
    assert (error.last_error, error.reason) == (None, "no attempt possible")


def test_service_unavailable_keeps_an_explicit_reason() -> None:
    """A reason given by the caller wins over the last error's type name."""
    error = ServiceUnavailableError("billing", 2, ConnectionRefusedError(), reason="refused")
    assert error.reason == "refused"
    assert str(error).endswith(": refused")


def test_deadline_exceeded_carries_service_and_timeout() -> None:
    """DeadlineExceededError keeps the service and the deadline, shown compactly."""
    error = DeadlineExceededError("billing", 2.5)
    assert (error.service, error.timeout) == ("billing", 2.5)
    assert str(error) == "call to service 'billing' exceeded its 2.5s deadline"


def test_circuit_open_carries_retry_after_and_never_shows_a_negative_wait() -> None:
    """CircuitOpenError keeps retry_after as given, and its message never shows a negative wait."""
    error = CircuitOpenError("billing", -0.4)
    assert (error.service, error.retry_after) == ("billing", -0.4)
    assert "next probe in 0.0s" in str(error)
    assert "next probe in 1.5s" in str(CircuitOpenError("billing", 1.5))


def test_request_rejected_carries_service_and_status() -> None:
    """RequestRejectedError keeps the refusing service and the HTTP status."""
    error = RequestRejectedError("billing", 403)
    assert (error.service, error.status) == ("billing", 403)
    assert (error.caller, error.key_id, error.version) == (None, None, None)
    assert "HTTP 403" in str(error)


PAIR = "0123456789abcdef-fedcba9876543210"


def test_request_rejected_carries_how_it_was_sealed() -> None:
    """The caller, key id and protocol version are kept, and the message shows them."""
    error = RequestRejectedError("billing", 401, caller="orders", key_id=PAIR, version="2")
    assert (error.caller, error.key_id, error.version) == ("orders", PAIR, "2")
    assert f"(sealed as 'orders', protocol v2, key ids {PAIR})" in str(error)


@pytest.mark.parametrize("status", [400, 401, 403, 413])
def test_every_refusal_says_where_its_reason_is(status: int) -> None:
    """Every refusal names the service's log, its logger and level, and the key id the
    log line shows (the caller's half of a v2 pair)."""
    text = str(RequestRejectedError("billing", status, caller="orders", key_id=PAIR, version="2"))
    assert "billing's log (logger mscomm_sync.wsgi, WARNING" in text
    assert f"'refused {status}: ...', kid='0123456789abcdef')" in text


@pytest.mark.parametrize(
    ("status", "causes"),
    [
        (401, ["trusts no public key 0123456789abcdef for 'orders'",
               "--from-env ORDERS_PRIVATE_KEY", "ORDERS_PUBLIC_KEY",
               "fedcba9876543210 is not a key billing holds", "clocks", "altered"]),
        (403, ["verified 'orders'", "trust file's callers for billing",
               "allowed_callers=", "MSCOMM_CALLERS"]),
        (413, ["larger than billing accepts"]),
        (400, ["malformed", "SCRIPT_NAME"]),
    ],
    ids=["401", "403", "413", "400"],
)  # fmt: skip
def test_each_refusal_names_its_usual_causes(status: int, causes: list[str]) -> None:
    """Each status has its own usual causes in the message, and only its own."""
    text = str(RequestRejectedError("billing", status, caller="orders", key_id=PAIR, version="2"))
    for cause in causes:
        assert cause in text
    assert ("Usual causes" in text) == (status == 401)
    assert ("MSCOMM_CALLERS" in text) == (status == 403)


def test_a_v1_refusal_points_at_the_callers_shared_key() -> None:
    """A v1 401 names the caller's shared-key variable and how to see its key id."""
    error = RequestRejectedError(
        "billing", 401, caller="other-service", key_id="0123456789abcdef", version="1"
    )
    text = str(error)
    assert "(sealed as 'other-service', protocol v1, key id 0123456789abcdef)" in text
    assert "--v1-from-env OTHER_SERVICE_ENCRYPTION_KEY" in text


def test_a_refusal_without_seal_facts_still_says_where_to_look() -> None:
    """With no caller, key id or version known, the message still names the log."""
    text = str(RequestRejectedError("billing", 401))
    assert text.startswith("service 'billing' rejected the request with HTTP 401. ")
    assert "logger mscomm_sync.wsgi" in text and "kid=" not in text


def test_integrity_error_carries_service_and_reason() -> None:
    """IntegrityError keeps the claimed sender and the reason, for local logs."""
    error = IntegrityError(service="orders", reason="stale timestamp")
    assert (error.service, error.reason) == ("orders", "stale timestamp")


@pytest.mark.parametrize(
    "reason", ["", "bad tag", "stale timestamp", "replayed message", "unknown key id", SECRET]
)
def test_integrity_error_message_is_the_same_whatever_the_reason(reason: str) -> None:
    """Every rejection has the one fixed message, so a peer learns nothing from it."""
    error = IntegrityError(service="orders", reason=reason)
    assert str(error) == "sealed message rejected"
    assert error.args == ("sealed message rejected",)


def test_integrity_error_repr_shows_the_service_but_not_the_reason() -> None:
    """The repr names the claimed sender and leaves the reason out."""
    error = IntegrityError(service="orders", reason="bad tag")
    assert repr(error) == "IntegrityError(service='orders')"


def test_insecure_response_is_an_integrity_error_with_its_own_message() -> None:
    """A downgraded answer is an IntegrityError with a fixed message and the status seen."""
    error = InsecureResponseError(service="billing", status=200)
    assert isinstance(error, IntegrityError)
    assert str(error) == "unsealed response to a sealed request refused"
    assert (error.service, error.status, error.reason) == ("billing", 200, "unsealed response")
    assert repr(error) == "InsecureResponseError(service='billing')"


def test_no_message_or_repr_contains_a_secret_passed_in() -> None:
    """A secret in a reason or in the last failure's text never reaches str() or repr()."""
    raised = [
        IntegrityError(service="orders", reason=f"tag mismatch for {SECRET}"),
        ServiceUnavailableError("billing", 2, ValueError(f"body was {SECRET}")),
        ServiceUnavailableError("billing", 2, OSError(SECRET)),
    ]
    for error in raised:
        assert SECRET not in str(error), type(error)
        assert SECRET not in repr(error), type(error)


def _examples() -> list[MscommError]:
    """One instance of every exported error, with its fields set."""
    return [
        errors.ConfigurationError("bad", variable="X_ENCRYPTION_KEY", reason="empty"),
        errors.IntegrityError(service="orders", reason="bad tag"),
        errors.InsecureResponseError(service="billing", status=502),
        errors.ReplayGapError(service="orders", message_id="ab" * 16, not_before=1.0),
        errors.RegistryError("gone", location="/r.json", reason="missing"),
        errors.ServiceNotFoundError("billing", "/srv/registry.json"),
        errors.ServiceUnavailableError("billing", 3, OSError("x"), reason="ReadTimeout"),
        errors.DeadlineExceededError("billing", 1.5),
        errors.CircuitOpenError("billing", 2.0),
        errors.RequestRejectedError("billing", 401, caller="orders", key_id=PAIR, version="2"),
        errors.ResponseTooLargeError("billing", 10, 20),
        errors.ServiceUnreachableError("billing", 1, reason="connection refused"),
        errors.AnswerLostError("billing", 2, reason="ReadTimeout"),
        errors.DeadlineBeforeSendingError("billing", 1.0),
        errors.DeadlineAfterSendingError("billing", 1.0),
        errors.DeadlineSpentOnArrivalError("billing", 1.0),
        errors.UnverifiedAnswerError(service="billing", reason="bad tag"),
        errors.IdempotencyStoreError("failed", store="<store>", reason="OperationalError"),
        errors.IdempotencyError("refused", service="billing", idempotency_key="k-1", status=409),
        errors.IdempotencyInProgressError(service="billing", idempotency_key="k-1", retry_after=1),
        errors.IdempotencyKeyReusedError(service="billing", idempotency_key="k-1"),
        errors.IdempotentAnswerLostError(service="billing", idempotency_key="k-1"),
    ]


@pytest.mark.parametrize("error", _examples(), ids=lambda e: type(e).__name__)
def test_every_error_pickles_with_its_fields(error: MscommError) -> None:
    """An error survives pickling (Celery sends them between processes): same type, message
    and fields; the foreign last_error is dropped, its reason kept."""
    import pickle

    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    expected = {k: (None if k == "last_error" else v) for k, v in vars(error).items()}
    assert {k: v for k, v in vars(copy).items()} == expected


def test_the_examples_cover_every_error() -> None:
    """The pickling examples hold every concrete exported error but the base."""
    covered = {type(e) for e in _examples()}
    bases = {
        MscommError,
        errors.NotDeliveredError,
        errors.MaybeDeliveredError,
        errors.AnsweredError,
        errors.Delivery,
    }
    exported = {getattr(errors, name) for name in errors.__all__} - bases
    assert covered == exported


@pytest.mark.parametrize("error", _examples(), ids=lambda e: type(e).__name__)
def test_the_delivery_field_and_the_type_agree(error: MscommError) -> None:
    """Every error that says how far its request got says it both ways: its delivery field
    and exactly one of the three marker types."""
    markers = {
        errors.Delivery.NOT_DELIVERED: errors.NotDeliveredError,
        errors.Delivery.MAYBE_DELIVERED: errors.MaybeDeliveredError,
        errors.Delivery.ANSWERED: errors.AnsweredError,
    }
    delivery = getattr(error, "delivery", None)
    kinds = [marker for marker in markers.values() if isinstance(error, marker)]
    if delivery is None:
        assert kinds == []  # not a call's error: configuration, registry, the server's side
        return
    if type(error) in (errors.ServiceUnavailableError, errors.DeadlineExceededError):
        assert delivery is errors.Delivery.MAYBE_DELIVERED and kinds == []  # the bases: unknown
        return
    assert kinds == [markers[delivery]]
