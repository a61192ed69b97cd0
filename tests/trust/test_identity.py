"""A service's own private keys: <NAME>_PRIVATE_KEY or its _FILE, several while rotating."""

from __future__ import annotations

import copy
import os
import pickle
from pathlib import Path

import pytest

from mscomm_sync.errors import ConfigurationError
from mscomm_sync.trust import Identity, PrivateKey, generate_private_key


def test_reads_the_private_key_variable(billing: PrivateKey) -> None:
    """Identity("billing") seals with the key in BILLING_PRIVATE_KEY."""
    identity = Identity("billing", environ={"BILLING_PRIVATE_KEY": billing.text()})
    assert identity.current.kid == billing.kid
    assert identity.variable == "BILLING_PRIVATE_KEY"


def test_a_dashed_name_reads_its_one_variable(billing: PrivateKey) -> None:
    """billing-v2 reads BILLING_V2_PRIVATE_KEY."""
    identity = Identity("billing-v2", environ={"BILLING_V2_PRIVATE_KEY": billing.text()})
    assert identity.current.kid == billing.kid


def test_reads_the_file_named_by_the_file_variable(tmp_path: Path, billing: PrivateKey) -> None:
    """With only BILLING_PRIVATE_KEY_FILE set, the key is read from that file."""
    path = tmp_path / "billing.key"
    path.write_text(billing.text() + "\n")
    identity = Identity("billing", environ={"BILLING_PRIVATE_KEY_FILE": str(path)})
    assert identity.current.kid == billing.kid


def test_a_file_holds_one_key_per_line_the_first_current(tmp_path: Path) -> None:
    """A key file's lines are its keys, the first current; blank lines are skipped."""
    new, old = generate_private_key(), generate_private_key()
    path = tmp_path / "billing.key"
    path.write_text(f"{new.text()}\n\n{old.text()}\n")
    identity = Identity("billing", environ={"BILLING_PRIVATE_KEY_FILE": str(path)})
    keys = identity.keys()
    assert [k.kid for k in keys] == [new.kid, old.kid]


def test_several_keys_first_current_all_findable_by_id() -> None:
    """NEW,OLD: NEW seals, and both are found by their key id."""
    new, old = generate_private_key(), generate_private_key()
    identity = Identity("billing", environ={"BILLING_PRIVATE_KEY": f"{new.text()},{old.text()}"})
    assert identity.current.kid == new.kid
    found_old = identity.find(old.kid)
    assert found_old is not None and found_old.public.raw == old.public.raw
    assert identity.find(new.kid) is not None
    assert identity.find(generate_private_key().kid) is None


def test_the_variable_wins_over_the_file(tmp_path: Path) -> None:
    """When both are set, BILLING_PRIVATE_KEY is read and the file is not."""
    in_var, in_file = generate_private_key(), generate_private_key()
    path = tmp_path / "billing.key"
    path.write_text(in_file.text())
    environ = {"BILLING_PRIVATE_KEY": in_var.text(), "BILLING_PRIVATE_KEY_FILE": str(path)}
    assert Identity("billing", environ=environ).current.kid == in_var.kid


def test_a_missing_key_names_both_places_to_set_it() -> None:
    """Without a key, the error names BILLING_PRIVATE_KEY and BILLING_PRIVATE_KEY_FILE."""
    identity = Identity("billing", environ={})
    assert not identity.available()
    with pytest.raises(ConfigurationError) as caught:
        identity.keys()
    assert caught.value.reason == "missing"
    assert caught.value.variable == "BILLING_PRIVATE_KEY"
    assert "BILLING_PRIVATE_KEY_FILE" in str(caught.value)


def test_available_says_whether_a_key_is_configured(tmp_path: Path) -> None:
    """available() is true with either variable set, before anything is read."""
    assert Identity("billing", environ={"BILLING_PRIVATE_KEY": "x"}).available()
    assert Identity("billing", environ={"BILLING_PRIVATE_KEY_FILE": "/nowhere"}).available()
    assert not Identity("billing", environ={"ORDERS_PRIVATE_KEY": "x"}).available()


def test_keys_are_read_lazily() -> None:
    """A malformed key is not an error until the keys are used."""
    identity = Identity("billing", environ={"BILLING_PRIVATE_KEY": "bad"})
    with pytest.raises(ConfigurationError):
        identity.keys()


def test_a_malformed_key_names_the_variable_not_the_value(billing: PrivateKey) -> None:
    """A bad second key fails with the variable's name and no part of either key."""
    bad = billing.text()[:-3]
    value = f"{billing.text()},{bad}"
    with pytest.raises(ConfigurationError) as caught:
        Identity("billing", environ={"BILLING_PRIVATE_KEY": value}).keys()
    assert "BILLING_PRIVATE_KEY" in str(caught.value)
    assert bad[:12] not in str(caught.value)


def test_a_malformed_key_file_names_the_file_not_the_value(tmp_path: Path) -> None:
    """A key file holding no valid key is named (its path), its content is not."""
    path = tmp_path / "billing.key"
    path.write_text("passphrase-in-a-file\n")
    with pytest.raises(ConfigurationError) as caught:
        Identity("billing", environ={"BILLING_PRIVATE_KEY_FILE": str(path)}).keys()
    assert str(path) in str(caught.value)
    assert "passphrase" not in str(caught.value)


def test_an_unreadable_key_file_names_its_variable(tmp_path: Path) -> None:
    """A key file that cannot be opened fails naming BILLING_PRIVATE_KEY_FILE."""
    environ = {"BILLING_PRIVATE_KEY_FILE": str(tmp_path / "missing.key")}
    with pytest.raises(ConfigurationError) as caught:
        Identity("billing", environ=environ).keys()
    assert caught.value.variable == "BILLING_PRIVATE_KEY_FILE"
    assert caught.value.reason == "unreadable"


@pytest.mark.parametrize("value", ["", " , ,"])
def test_an_empty_variable_is_refused(value: str) -> None:
    """A variable that is set but holds no key is an error, not "no key"."""
    with pytest.raises(ConfigurationError) as caught:
        Identity("billing", environ={"BILLING_PRIVATE_KEY": value}).keys()
    assert caught.value.reason == "empty"


@pytest.mark.parametrize("name", ["Billing", "billing_v2", "billing.v2", ""])
def test_a_name_not_in_canonical_form_is_refused(name: str) -> None:
    """Identity takes only canonical service names."""
    with pytest.raises(ConfigurationError):
        Identity(name, environ={})


def test_an_empty_list_of_keys_is_refused() -> None:
    """Identity(keys=[]) is an error: a service needs at least one key."""
    with pytest.raises(ConfigurationError):
        Identity("billing", keys=[])


def test_reload_reads_a_rotated_variable_again() -> None:
    """After the variable changes, reload() makes the next use read the new key."""
    first, second = generate_private_key(), generate_private_key()
    environ = {"BILLING_PRIVATE_KEY": first.text()}
    identity = Identity("billing", environ=environ)
    assert identity.current.kid == first.kid
    environ["BILLING_PRIVATE_KEY"] = second.text()
    assert identity.current.kid == first.kid  # cached until reload
    identity.reload()
    assert identity.current.kid == second.kid


def test_refuses_to_pickle_keys_it_holds(billing: PrivateKey) -> None:
    """An Identity built from keys, or from a mapping, is never pickled."""
    with pytest.raises(TypeError):
        pickle.dumps(Identity("billing", keys=[billing]))
    with pytest.raises(TypeError):
        pickle.dumps(Identity("billing", environ={"BILLING_PRIVATE_KEY": billing.text()}))


def test_an_environment_identity_pickles_as_read_again(
    monkeypatch: pytest.MonkeyPatch, billing: PrivateKey
) -> None:
    """One reading os.environ pickles without its keys, and the copy reads them itself."""
    monkeypatch.setenv("BILLING_PRIVATE_KEY", billing.text())
    identity = Identity("billing")
    identity.keys()
    data = pickle.dumps(identity)
    assert billing.text().encode() not in data
    monkeypatch.setenv("BILLING_PRIVATE_KEY", generate_private_key().text())
    assert pickle.loads(data).current.kid != billing.kid  # noqa: S301 - our own pickle
    assert os.environ["BILLING_PRIVATE_KEY"] != billing.text()


def test_copies_share_the_keys(billing: PrivateKey) -> None:
    """copy and deepcopy return the same Identity: keys are never duplicated."""
    identity = Identity("billing", keys=[billing])
    assert copy.copy(identity) is identity
    assert copy.deepcopy(identity) is identity


def test_the_repr_shows_key_ids_only(billing: PrivateKey) -> None:
    """The repr names the service and key ids, and no part of a key."""
    identity = Identity("billing", environ={"BILLING_PRIVATE_KEY": billing.text()})
    assert "unread" in repr(identity)
    identity.keys()
    assert billing.kid in repr(identity)
    assert billing.text()[:12] not in repr(identity)
