"""Tests for mscomm_sync.registry.catalogue: the in-memory view lookups are answered from."""

from __future__ import annotations

import threading

from mscomm_sync.registry.base import Instance, make_instance
from mscomm_sync.registry.catalogue import Catalogue

A1 = make_instance("alpha", "http://127.0.0.1:8001")
A2 = make_instance("alpha", "http://127.0.0.1:8002")
B1 = make_instance("billing", "http://127.0.0.1:9001")
C1 = make_instance("carol", "http://127.0.0.1:7001")


def urls(instances: list[Instance]) -> list[str]:
    return [inst.url for inst in instances]


def filled(*instances: Instance) -> Catalogue:
    """A catalogue holding ``instances``."""
    catalogue = Catalogue()
    catalogue.replace(instances)
    return catalogue


def test_an_empty_catalogue_knows_nothing() -> None:
    """A new catalogue has no services, no instances and answers an empty list."""
    catalogue = Catalogue()
    assert (catalogue.get("alpha"), catalogue.services(), catalogue.all(), len(catalogue)) == (
        [],
        [],
        [],
        0,
    )


def test_replace_groups_by_service_and_keeps_order_within_one() -> None:
    """Instances are grouped by service, each group in the order given."""
    catalogue = filled(A2, B1, A1)
    assert urls(catalogue.get("alpha")) == [A2.url, A1.url]
    assert catalogue.get("billing") == [B1]


def test_services_are_sorted() -> None:
    """services() lists the names with instances in sorted order."""
    assert filled(C1, A1, B1).services() == ["alpha", "billing", "carol"]


def test_all_lists_service_by_service() -> None:
    """all() gives every instance, services in sorted order, each in its own order."""
    assert filled(C1, A2, B1, A1).all() == [A2, A1, B1, C1]


def test_get_returns_a_new_list_each_time() -> None:
    """Changing a returned list changes nothing in the catalogue."""
    catalogue = filled(A1)
    got = catalogue.get("alpha")
    got.clear()
    assert catalogue.get("alpha") == [A1]
    assert catalogue.get("alpha") is not catalogue.get("alpha")


def test_replace_drops_what_is_no_longer_there() -> None:
    """replace() swaps in the new set: services not in it are gone."""
    catalogue = filled(A1, B1)
    catalogue.replace([C1])
    assert (catalogue.services(), catalogue.get("alpha")) == (["carol"], [])


def test_upsert_adds_a_new_instance_at_the_end() -> None:
    """A new key is appended to its service's instances."""
    catalogue = filled(A1)
    catalogue.upsert(A2)
    assert catalogue.get("alpha") == [A1, A2]


def test_upsert_replaces_the_same_key_in_place() -> None:
    """An instance with a known (service, url) replaces the old record where it stood."""
    catalogue = filled(A1, A2)
    updated = make_instance("alpha", A1.url, metadata={"zone": "b"})
    catalogue.upsert(updated)
    assert catalogue.get("alpha") == [updated, A2]
    assert len(catalogue) == 2


def test_upsert_of_a_new_service_lists_it() -> None:
    """Upserting into an unknown service creates it."""
    catalogue = filled(A1)
    catalogue.upsert(B1)
    assert catalogue.services() == ["alpha", "billing"]


def test_remove_drops_only_that_instance() -> None:
    """remove() takes out one (service, url) and leaves the rest in order."""
    catalogue = filled(A1, A2, B1)
    catalogue.remove(A1.key)
    assert (catalogue.get("alpha"), catalogue.get("billing")) == ([A2], [B1])


def test_removing_the_last_instance_removes_the_service() -> None:
    """A service whose last instance is removed is no longer listed."""
    catalogue = filled(A1, B1)
    catalogue.remove(B1.key)
    assert catalogue.services() == ["alpha"]


def test_removing_an_absent_instance_changes_nothing() -> None:
    """Removing an unknown key, of a known or unknown service, is harmless."""
    catalogue = filled(A1)
    catalogue.remove(("alpha", "http://127.0.0.1:1"))
    catalogue.remove(("nobody", "http://127.0.0.1:1"))
    assert catalogue.all() == [A1]


def test_len_counts_instances() -> None:
    """len() is the number of instances over all services."""
    assert len(filled(A1, A2, B1)) == 3


# -- the health overlay -----------------------------------------------------------


def test_unhealthy_instances_are_reported_unhealthy() -> None:
    """Instances marked unhealthy come back with healthy=False; the others are unchanged."""
    catalogue = filled(A1, A2, B1)
    catalogue.set_unhealthy([A2.key])
    assert [inst.healthy for inst in catalogue.get("alpha")] == [True, False]
    assert catalogue.get("billing") == [B1]
    assert [inst.healthy for inst in catalogue.all()] == [True, False, True]


def test_clearing_the_verdicts_makes_instances_healthy_again() -> None:
    """The overlay does not change the stored records: clearing it restores them."""
    catalogue = filled(A1)
    catalogue.set_unhealthy([A1.key])
    catalogue.set_unhealthy([])
    assert catalogue.get("alpha") == [A1]
    assert A1.healthy


def test_verdicts_outlive_a_replace() -> None:
    """Records read again from the backend still carry this process's verdicts."""
    catalogue = filled(A1)
    catalogue.set_unhealthy([A1.key])
    catalogue.replace([make_instance("alpha", A1.url), A2])
    assert [inst.healthy for inst in catalogue.get("alpha")] == [False, True]


def test_verdicts_apply_to_an_upserted_record() -> None:
    """A record updated in place keeps its instance's verdict."""
    catalogue = filled(A1)
    catalogue.set_unhealthy([A1.key])
    catalogue.upsert(make_instance("alpha", A1.url, metadata={"v": 2}))
    [inst] = catalogue.get("alpha")
    assert (inst.healthy, dict(inst.metadata)) == (False, {"v": 2})


def test_a_verdict_for_an_unknown_service_adds_nothing() -> None:
    """An unhealthy key of a service with no instances creates no service."""
    catalogue = filled(A1)
    catalogue.set_unhealthy([("ghost", "http://127.0.0.1:1")])
    assert catalogue.services() == ["alpha"]


# -- forks ------------------------------------------------------------------------------


def test_reset_lock_frees_a_catalogue_whose_lock_is_held() -> None:
    """After reset_lock() (as in a forked child), writes proceed although the old lock is held."""
    catalogue = filled(A1)
    old = catalogue._lock
    assert old.acquire(timeout=5)
    try:
        catalogue.reset_lock()
        writer = threading.Thread(target=catalogue.upsert, args=(B1,), daemon=True)
        writer.start()
        writer.join(10)
        assert not writer.is_alive()
    finally:
        old.release()
    assert catalogue.services() == ["alpha", "billing"]
