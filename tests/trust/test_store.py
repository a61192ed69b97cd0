"""TrustStore: the trust file first, then <NAME>_PUBLIC_KEY; re-read on change, never backwards."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest

from mscomm_sync.errors import ConfigurationError
from mscomm_sync.trust import PrivateKey, TrustStore, generate_private_key
from mscomm_sync.trust.signing import generate_root, parse_roots, sign

from .conftest import document, key_entry, write

LOGGER = "mscomm_sync.trust"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def replace(path: Path, doc: dict[str, Any]) -> None:
    """Replace the file atomically, as `mscomm trust` does (a new inode)."""
    tmp = path.with_suffix(".tmp")
    write(tmp, doc)
    os.replace(tmp, path)


def store(path: Path, monotonic: Clock, **options: Any) -> TrustStore:
    """A store of ``path`` checking it at most once a second of ``monotonic``."""
    options.setdefault("environ", {})
    return TrustStore(path, monotonic=monotonic, check_interval=1.0, **options)


def test_the_trust_file_wins_over_the_environment(
    tmp_path: Path, billing: PrivateKey, orders: PrivateKey
) -> None:
    """For a service the file lists, BILLING_PUBLIC_KEY is not read at all."""
    path = write(tmp_path / "trust.json", document({"billing": [billing]}))
    impostor = generate_private_key()
    trust = TrustStore(path, environ={"BILLING_PUBLIC_KEY": impostor.public.text})
    assert [k.kid for k in trust.public_keys("billing")] == [billing.kid]
    assert trust.find("billing", impostor.kid) is None


def test_the_environment_covers_services_the_file_does_not_list(
    tmp_path: Path, billing: PrivateKey, orders: PrivateKey
) -> None:
    """A service missing from the trust file takes its keys from <NAME>_PUBLIC_KEY."""
    path = write(tmp_path / "trust.json", document({"billing": [billing]}))
    trust = TrustStore(path, environ={"ORDERS_PUBLIC_KEY": orders.public.text})
    sealing = trust.sealing_key("orders")
    assert sealing is not None and sealing.kid == orders.kid


def test_without_a_file_keys_come_from_the_environment(billing: PrivateKey) -> None:
    """With no trust file, BILLING_PUBLIC_KEY's keys are used, the first sealing."""
    new, old = generate_private_key(), generate_private_key()
    trust = TrustStore(environ={"BILLING_PUBLIC_KEY": f"{new.public.text},{old.public.text}"})
    assert trust.path is None
    assert [k.kid for k in trust.public_keys("billing")] == [new.kid, old.kid]
    assert trust.sealing_key("orders") is None
    assert not trust.knows("orders")


def test_a_malformed_public_key_variable_names_it_and_the_service() -> None:
    """A bad <NAME>_PUBLIC_KEY fails naming the variable and the service, not the value."""
    trust = TrustStore(environ={"BILLING_PUBLIC_KEY": "definitely-not-a-key"})
    with pytest.raises(ConfigurationError) as caught:
        trust.public_keys("billing")
    assert "BILLING_PUBLIC_KEY" in str(caught.value)
    assert "'billing'" in str(caught.value)
    assert "definitely-not-a-key" not in str(caught.value)


def test_the_file_is_named_by_mscomm_trust(tmp_path: Path, billing: PrivateKey) -> None:
    """Without a path, MSCOMM_TRUST names the trust file."""
    path = write(tmp_path / "trust.json", document({"billing": [billing]}, serial=4))
    trust = TrustStore(environ={"MSCOMM_TRUST": str(path)})
    assert trust.path == str(path)
    assert trust.serial == 4


def test_an_expired_key_is_not_sealed_to(tmp_path: Path, billing: PrivateKey) -> None:
    """Past its not_after, a key is neither sealed to nor found; the next valid one is."""
    old = generate_private_key()
    doc = document({})
    doc["services"]["billing"] = {
        "keys": [key_entry(old, "2027-01-01T00:00:00Z"), key_entry(billing)]
    }
    clock = Clock(1798761600.0)  # 2027-01-01T00:00:00Z: the last second it is trusted
    trust = TrustStore(write(tmp_path / "trust.json", doc), environ={}, clock=clock)
    assert trust.sealing_key("billing").kid == old.kid  # type: ignore[union-attr]
    clock.now += 1
    assert trust.sealing_key("billing").kid == billing.kid  # type: ignore[union-attr]
    assert trust.find("billing", old.kid) is None
    assert trust.knows("billing")


def test_the_file_is_re_read_when_it_changes(tmp_path: Path, billing: PrivateKey) -> None:
    """A new version of the file is in force once the check interval has passed."""
    path = write(tmp_path / "trust.json", document({"billing": [billing]}, serial=1))
    monotonic = Clock()
    trust = store(path, monotonic)
    trust.public_keys("billing")
    new = generate_private_key()
    replace(path, document({"billing": [new]}, serial=2))
    monotonic.now = 1.0
    assert trust.sealing_key("billing").kid == new.kid  # type: ignore[union-attr]
    assert trust.serial == 2


def test_the_file_is_not_checked_more_often_than_the_interval(
    tmp_path: Path, billing: PrivateKey
) -> None:
    """Within check_interval of the last check, the version in force stays."""
    path = write(tmp_path / "trust.json", document({"billing": [billing]}, serial=1))
    monotonic = Clock()
    trust = store(path, monotonic)
    trust.public_keys("billing")
    replace(path, document({"billing": [generate_private_key()]}, serial=2))
    monotonic.now = 0.99
    assert trust.sealing_key("billing").kid == billing.kid  # type: ignore[union-attr]


def test_an_edit_in_place_is_seen_by_its_mtime(tmp_path: Path, billing: PrivateKey) -> None:
    """A file rewritten in place (same inode, same size) is re-read once its mtime moves."""
    path = write(tmp_path / "trust.json", document({"billing": [billing]}, serial=1))
    before = os.stat(path)
    monotonic = Clock()
    trust = store(path, monotonic)
    trust.public_keys("billing")
    new = generate_private_key()
    write(path, document({"billing": [new]}, serial=2))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    assert os.stat(path).st_ino == before.st_ino and os.stat(path).st_size == before.st_size
    monotonic.now = 5.0
    assert trust.sealing_key("billing").kid == new.kid  # type: ignore[union-attr]


def test_reload_checks_the_file_at_once(tmp_path: Path, billing: PrivateKey) -> None:
    """reload() reads a changed file without waiting for the interval."""
    path = write(tmp_path / "trust.json", document({"billing": [billing]}, serial=1))
    trust = store(path, Clock())
    trust.public_keys("billing")
    replace(path, document({"billing": [billing]}, serial=3))
    trust.reload()
    assert trust.serial == 3


def test_reload_reads_the_environment_again(billing: PrivateKey) -> None:
    """reload() forgets public keys read from the environment."""
    environ = {"BILLING_PUBLIC_KEY": billing.public.text}
    trust = TrustStore(environ=environ)
    assert trust.sealing_key("billing").kid == billing.kid  # type: ignore[union-attr]
    new = generate_private_key()
    environ["BILLING_PUBLIC_KEY"] = new.public.text
    trust.reload()
    assert trust.sealing_key("billing").kid == new.kid  # type: ignore[union-attr]


def test_a_broken_new_version_keeps_the_last_good_one(
    tmp_path: Path, billing: PrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    """A new version that does not parse is refused at ERROR; the last good one stays."""
    path = write(tmp_path / "trust.json", document({"billing": [billing]}, serial=1))
    monotonic = Clock()
    trust = store(path, monotonic)
    path.write_text('{"format": "mscomm-trust", ')
    monotonic.now = 1.0
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert trust.sealing_key("billing").kid == billing.kid  # type: ignore[union-attr]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert str(path) in errors[0].getMessage()
    assert "keeping the last good one" in errors[0].getMessage()


def test_a_broken_version_is_logged_once_not_at_every_check(
    tmp_path: Path, billing: PrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    """The same broken version is reported once, however often the file is checked."""
    path = write(tmp_path / "trust.json", document({"billing": [billing]}, serial=1))
    monotonic = Clock()
    trust = store(path, monotonic)
    path.write_text("not json")
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        for second in range(1, 6):
            monotonic.now = float(second)
            trust.public_keys("billing")
    assert len(caplog.records) == 1


def test_a_repaired_file_is_read_after_a_broken_one(tmp_path: Path, billing: PrivateKey) -> None:
    """After a broken version, the next good one is read."""
    path = write(tmp_path / "trust.json", document({"billing": [billing]}, serial=1))
    monotonic = Clock()
    trust = store(path, monotonic)
    path.write_text("not json")
    monotonic.now = 1.0
    trust.public_keys("billing")
    replace(path, document({"billing": [billing]}, serial=2))
    monotonic.now = 2.0
    assert trust.serial == 2


def test_a_deleted_file_keeps_the_last_good_version(
    tmp_path: Path, billing: PrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    """If the file disappears, its last version stays in force and the loss is logged."""
    path = write(tmp_path / "trust.json", document({"billing": [billing]}, serial=1))
    monotonic = Clock()
    trust = store(path, monotonic)
    path.unlink()
    monotonic.now = 1.0
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        assert trust.sealing_key("billing").kid == billing.kid  # type: ignore[union-attr]
    assert any("cannot be read" in r.getMessage() for r in caplog.records)


def test_a_lower_serial_is_refused(
    tmp_path: Path, billing: PrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    """A version whose serial is lower than the one in force is refused, at ERROR."""
    path = write(tmp_path / "trust.json", document({"billing": [billing]}, serial=5))
    monotonic = Clock()
    trust = store(path, monotonic)
    replace(path, document({"billing": [generate_private_key()]}, serial=4))
    monotonic.now = 1.0
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        assert trust.sealing_key("billing").kid == billing.kid  # type: ignore[union-attr]
    assert trust.serial == 5
    assert any("went back from serial 5 to 4" in r.getMessage() for r in caplog.records)


def test_the_same_serial_is_accepted(tmp_path: Path, billing: PrivateKey) -> None:
    """A new version with the same serial replaces the old one (only going back is refused)."""
    path = write(tmp_path / "trust.json", document({"billing": [billing]}, serial=5))
    monotonic = Clock()
    trust = store(path, monotonic)
    new = generate_private_key()
    replace(path, document({"billing": [new]}, serial=5))
    monotonic.now = 1.0
    assert trust.sealing_key("billing").kid == new.kid  # type: ignore[union-attr]


def test_callers_come_from_the_file(tmp_path: Path, billing: PrivateKey) -> None:
    """callers() is the file's list for a service, None when the file says nothing."""
    doc = document({"billing": [billing], "orders": [generate_private_key()]})
    doc["services"]["billing"]["callers"] = ["orders"]
    trust = TrustStore(write(tmp_path / "trust.json", doc), environ={})
    assert trust.callers("billing") == frozenset({"orders"})
    assert trust.callers("orders") is None
    assert trust.callers("ledger") is None
    assert TrustStore(environ={}).callers("billing") is None


def test_a_signed_file_is_accepted_with_its_root_pinned(
    tmp_path: Path, billing: PrivateKey
) -> None:
    """With MSCOMM_TRUST_ROOT set, a file that root signed is read."""
    private, public = generate_root()
    path = write(
        tmp_path / "trust.json", sign(document({"billing": [billing]}), private, source="R")
    )
    trust = TrustStore(path, environ={"MSCOMM_TRUST_ROOT": public})
    assert [r.kid for r in trust.roots] == [parse_roots(public)[0].kid]
    assert trust.sealing_key("billing").kid == billing.kid  # type: ignore[union-attr]


def test_an_unsigned_new_version_is_refused_when_a_root_is_pinned(
    tmp_path: Path, billing: PrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    """An unsigned (or re-edited) new version does not replace a signed one."""
    private, public = generate_root()
    path = write(
        tmp_path / "trust.json", sign(document({"billing": [billing]}), private, source="R")
    )
    monotonic = Clock()
    trust = store(path, monotonic, roots=parse_roots(public))
    replace(path, document({"billing": [generate_private_key()]}, serial=9))
    monotonic.now = 1.0
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        assert trust.sealing_key("billing").kid == billing.kid  # type: ignore[union-attr]
    assert any("not signed" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("problem", ["missing", "malformed", "unsigned"])
def test_a_bad_first_read_raises_naming_mscomm_trust(
    tmp_path: Path, billing: PrivateKey, problem: str
) -> None:
    """A trust file that cannot be used at start-up is a ConfigurationError naming MSCOMM_TRUST."""
    path = tmp_path / "trust.json"
    if problem == "malformed":
        path.write_text("[]")
    elif problem == "unsigned":
        write(path, document({"billing": [billing]}))
    roots = parse_roots(generate_root()[1])
    with pytest.raises(ConfigurationError) as caught:
        TrustStore(path, environ={}, roots=roots)
    assert caught.value.variable == "MSCOMM_TRUST"
    assert "MSCOMM_TRUST" in str(caught.value)
    assert str(path) in str(caught.value)


def test_a_malformed_pinned_root_is_an_error(tmp_path: Path, billing: PrivateKey) -> None:
    """A MSCOMM_TRUST_ROOT that does not parse fails at construction, naming it."""
    path = write(tmp_path / "trust.json", document({"billing": [billing]}))
    with pytest.raises(ConfigurationError, match="MSCOMM_TRUST_ROOT"):
        TrustStore(path, environ={"MSCOMM_TRUST_ROOT": "nope"})


def test_the_repr_names_the_file_and_serial(tmp_path: Path, billing: PrivateKey) -> None:
    """The repr shows the path, serial and number of roots, and no key."""
    path = write(tmp_path / "trust.json", document({"billing": [billing]}, serial=2))
    shown = repr(TrustStore(path, environ={}))
    assert shown == f"<TrustStore path={str(path)!r} serial=2 roots=0>"


def test_a_new_breakage_after_a_repair_is_logged_again(
    tmp_path: Path, billing: PrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    """Broken, repaired, broken the same way again: both breakages are logged."""
    path = write(tmp_path / "trust.json", document({"billing": [billing]}, serial=1))
    monotonic = Clock()
    trust = store(path, monotonic)
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        for second, content in enumerate(["not json", None, "not json"], start=1):
            if content is None:
                replace(path, document({"billing": [billing]}, serial=2))
            else:
                path.write_text(content)
            monotonic.now = float(second)
            trust.public_keys("billing")
    assert len(caplog.records) == 2
