"""Tests for mscomm_sync._fast: the bounded memo, Record, tuple_of and the shared no-ops."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable, NamedTuple, Optional

import pytest

from mscomm_sync._fast import Record, itself, memo, nothing, tuple_of


def counted(maxsize: int) -> tuple[Callable[..., str], list[Any]]:
    """Return a memoised function that records every argument it actually computes."""
    computed: list[Any] = []

    @memo(maxsize)
    def shout(text: Sequence[Any], suffix: str = "") -> str:
        computed.append(text)
        return f"{text}{suffix}".upper()

    return shout, computed


# -- memo ----------------------------------------------------------------------


def test_a_repeated_call_is_answered_from_the_cache() -> None:
    """The same arguments are computed once; later calls return the remembered result."""
    shout, computed = counted(4)
    assert [shout("a"), shout("a"), shout("a", "!"), shout("a", "!")] == ["A", "A", "A!", "A!"]
    assert computed == ["a", "a"]


def test_the_cache_never_holds_more_than_maxsize_results() -> None:
    """A flood of distinct arguments keeps the cache at maxsize, evicting the oldest first."""
    shout, computed = counted(3)
    for text in ("a", "b", "c", "d", "e"):
        shout(text)
    assert shout.cache_info().currsize == 3  # type: ignore[attr-defined]
    computed.clear()
    shout("e")
    shout("a")
    assert computed == ["a"]


def test_cache_clear_forgets_every_result() -> None:
    """After cache_clear() the cache is empty and the next call computes again."""
    shout, computed = counted(4)
    shout("a")
    shout.cache_clear()  # type: ignore[attr-defined]
    assert shout.cache_info().currsize == 0  # type: ignore[attr-defined]
    shout("a")
    assert computed == ["a", "a"]


def test_the_undecorated_function_is_reachable() -> None:
    """``__wrapped__`` is the original function: it computes without touching the cache."""
    shout, computed = counted(4)
    assert shout.__wrapped__("a") == "A"  # type: ignore[attr-defined]
    assert shout.__wrapped__("a") == "A"  # type: ignore[attr-defined]
    assert computed == ["a", "a"]
    assert shout.cache_info().currsize == 0  # type: ignore[attr-defined]
    assert shout.__name__ == "shout"


# -- Record --------------------------------------------------------------------


class Pair(Record):
    """A two-field record, in the order its slots list them."""

    __slots__ = ("second", "first")  # noqa: RUF023 - the fill order is under test

    first: str
    second: str


class Single(Record):
    """A record whose one slot is given as a plain string."""

    __slots__ = "only"

    only: int


def test_make_fills_the_slots_in_their_listed_order() -> None:
    """_make assigns its values to the slots in ``__slots__`` order, not alphabetical order."""
    pair = Pair._make("a", "b")
    assert (pair.second, pair.first) == ("a", "b")
    assert Pair._fields == ("second", "first")


def test_a_single_string_slot_is_one_field() -> None:
    """``__slots__ = "name"`` is one field, not one per character."""
    assert Single._fields == ("only",)
    assert Single._make(7).only == 7


def test_setting_an_attribute_is_refused() -> None:
    """Assigning to a field of a record raises AttributeError and leaves it unchanged."""
    pair = Pair._make("a", "b")
    with pytest.raises(AttributeError, match="immutable"):
        pair.first = "changed"
    assert pair.first == "b"


def test_deleting_an_attribute_is_refused() -> None:
    """Deleting a field of a record raises AttributeError and leaves it in place."""
    pair = Pair._make("a", "b")
    with pytest.raises(AttributeError, match="immutable"):
        del pair.first
    assert pair.first == "b"


def test_a_record_has_no_dict() -> None:
    """A record has slots only: no ``__dict__`` for stray attributes to land in."""
    pair = Pair._make("a", "b")
    assert not hasattr(pair, "__dict__")
    with pytest.raises(TypeError):
        vars(pair)


def test_a_record_is_not_a_sequence() -> None:
    """A record is not a tuple and cannot be iterated, so reporters cannot list its fields."""
    pair = Pair._make("secret", "b")
    assert not isinstance(pair, tuple)
    with pytest.raises(TypeError):
        iter(pair)  # type: ignore[call-overload]


def test_make_takes_exactly_one_value_per_field() -> None:
    """_make is generated per class: too few or too many values is a TypeError, not a gap."""
    with pytest.raises(TypeError):
        Pair._make("a")
    with pytest.raises(TypeError):
        Pair._make("a", "b", "c")


def test_make_works_from_an_instance_too() -> None:
    """_make is a static method, so ``record._make`` builds a new record of the same class."""
    pair = Pair._make("a", "b")
    other = pair._make("c", "d")
    assert (type(other), other.second, other.first) == (Pair, "c", "d")


class Labelled(Pair):
    """A record built on another record: its own slot, and the inherited ones."""

    __slots__ = ("label",)

    label: str


def test_make_returns_an_instance_of_the_record_class_itself() -> None:
    """_make fills a mutable twin, then the value is of the record class, with its methods."""
    pair = Pair._make("a", "b")
    assert type(pair) is Pair and isinstance(pair, Record)
    assert type(pair).__setattr__ is Record.__setattr__


def test_a_record_built_on_another_is_immutable_in_every_slot() -> None:
    """A subclass's _make fills its own slots; inherited and own slots both refuse changes."""
    labelled = Labelled._make("x")
    assert (type(labelled), labelled.label) == (Labelled, "x")
    with pytest.raises(AttributeError, match="immutable"):
        labelled.label = "y"
    with pytest.raises(AttributeError, match="immutable"):
        labelled.first = "y"
    assert Labelled._fields == ("label",)


def test_records_made_one_after_another_are_independent() -> None:
    """The twin is only a stage of building: no value is shared between two records."""
    one, two = Pair._make("a", "b"), Pair._make("c", "d")
    assert (one.second, one.first, two.second, two.first) == ("a", "b", "c", "d")


# -- tuple_of and the shared no-ops --------------------------------------------


class Span(NamedTuple):
    left: str
    right: Optional[str]


def test_tuple_of_builds_the_named_tuple_its_constructor_would() -> None:
    built = tuple_of(Span, ("a", None))
    assert type(built) is Span
    assert built == Span("a", None) and built.left == "a" and built.right is None


def test_the_shared_no_ops_take_anything() -> None:
    marker = object()
    assert nothing(marker, 1, "two", three=3) is None
    assert itself(marker) is marker


def test_every_idle_record_method_is_one_of_the_shared_functions() -> None:
    """What an unreported call or request runs is two code objects, whatever it calls."""
    from mscomm_sync.telemetry import calls, serving

    idle = {
        calls._NoAttempt: {"__enter__", "__exit__", "sealed_with", "answered"},
        calls._NoCall: {"__enter__", "__exit__", "breaker", "answered"},
        serving._NoRequest: {"refused", "verified", "finish"},
        serving._Unchanged: {"__enter__", "__exit__"},
    }
    for cls, names in idle.items():
        for name in names:
            assert cls.__dict__[name] in (nothing, itself), (cls, name)
