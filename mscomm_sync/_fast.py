"""The five speed tricks the per-call paths use, each defined once, with its reason.

Every sealed call runs the envelope, the middleware and the client loop once
per message, so a microsecond there is a measurable share of the whole call
(see ``docs/performance.md``). Each trick below was measured before it was
kept, and each one is used only through this module:

* :func:`memo` caches a pure function of its arguments, bounded. A service
  sees the same few routes, senders, status lines and instances over and
  over, so their derived forms (a canonical path, an associated-data head,
  an HKDF state) are computed once. Every cache is ``functools.lru_cache``
  (C code; a hit is one hash and one lookup, with no Python frame) with a
  fixed size, so a flood of made-up values evicts old entries and costs only
  its own computation. A value whose length a client chooses is never part
  of a key: the associated-data head leaves the target out, and the one
  cache of paths is called only for paths of at most 512 characters (the
  check is at its call site, so a hit stays frameless).
* Exact-type tests are written ``type(value) is str``, inline. Values from a
  WSGI server or urllib3 are nearly always of the exact built-in type;
  testing that is cheaper than ``isinstance`` and, unlike it, excludes
  subclasses whose ``__eq__`` or ``__hash__`` could lie to a set lookup, so
  the fast path is also the safe one. Anything else takes the slow path. (A
  helper function would cost a Python call, several times the test itself.)
* :class:`Record` is an immutable object with slots, built without keyword
  parsing by ``_make``, a constructor generated once per class (straight-line
  stores into a mutable twin of the class, which then becomes the record, as
  attrs generates its ``__init__``), for values created once per message. It
  is not a tuple on purpose: error reporters that walk sequences (and serialise a
  failing frame's locals) would list a tuple's fields, plaintext included.
* :data:`tuple_of` builds a ``NamedTuple`` (of metadata only, never
  plaintext) from all its fields, ``tuple_of(Cls, (a, b))``. It is
  ``tuple.__new__``, C code: the class's own ``__new__`` is a generated Python
  function, one more frame and one more code object for a call that arrives
  cold to fetch from memory.
* :func:`nothing` and :func:`itself` are every method of the idle telemetry
  records (what a call or request that nothing reports still calls). One
  shared function is one code object where a method each would be a dozen,
  and a call that arrives cold fetches each code object it runs from memory
  (about 10 last-level misses per distinct function, see
  ``docs/performance.md``).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, ClassVar, TypeVar

__all__ = ["Record", "itself", "memo", "nothing", "tuple_of"]

F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R", bound="Record")
T = TypeVar("T")


#: ``tuple_of(Cls, values)``: the ``NamedTuple`` ``Cls`` with all its fields, in C.
tuple_of = tuple.__new__


def nothing(self: object, *args: Any, **kwargs: Any) -> None:
    """A method that does nothing (an idle record's)."""
    return None


def itself(self: T) -> T:
    """A method that returns its object (an idle record's ``__enter__``)."""
    return self


def memo(maxsize: int) -> Callable[[F], F]:
    """Decorate a pure function with a bounded cache of its results.

    Args:
        maxsize: the most results kept (least recently used go first).

    The undecorated function stays reachable as ``__wrapped__``, and
    ``cache_clear()`` empties the cache.
    """

    def decorate(func: F) -> F:
        return functools.lru_cache(maxsize=maxsize)(func)  # type: ignore[return-value]

    return decorate


class Record:
    """An immutable value with slots, for objects made once per message.

    Subclasses list their fields in ``__slots__``; :meth:`_make` fills them
    in that order, bypassing the refusing ``__setattr__``.
    """

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, _twin: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        slots = cls.__dict__.get("__slots__", ())
        cls._fields = (slots,) if isinstance(slots, str) else tuple(slots)
        if not _twin:
            cls._make = staticmethod(_maker(cls))  # type: ignore[method-assign]

    @classmethod
    def _make(cls: type[R], *values: Any) -> R:
        """Build a record from its field values, in ``__slots__`` order (all of them)."""
        raise NotImplementedError  # replaced per subclass by _maker

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable (cannot set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable (cannot delete {name!r})")


def _maker(cls: type[R]) -> Callable[..., R]:
    # One straight-line function per record class. It fills a mutable twin
    # of the class (the same slots, the same base, object's __setattr__), whose
    # plain attribute stores CPython specialises, then makes the value an
    # instance of the record class, which refuses any later store: 0.17 us
    # for seven fields, against 0.54 us calling each slot's setter and 1.2 us
    # for a loop over object.__setattr__. A sealed round trip makes about six
    # records. attrs generates its __init__ the same way.
    fields = cls._fields
    for name in fields:
        if not name.isidentifier():
            raise TypeError(f"{cls.__name__}: slot {name!r} is not an identifier")
    twin = type(
        cls.__name__,
        cls.__bases__,
        {
            "__slots__": fields,
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
            "__setattr__": object.__setattr__,
            "__delattr__": object.__delattr__,
        },
        _twin=True,
    )
    params = ", ".join(f"v{i}" for i in range(len(fields)))
    lines = [f"def _make({params}):", "    r = new(twin)"]
    lines += [f"    r.{name} = v{i}" for i, name in enumerate(fields)]
    lines += ["    r.__class__ = cls", "    return r"]
    scope: dict[str, Any] = {"new": object.__new__, "twin": twin, "cls": cls}
    exec("\n".join(lines), scope)  # noqa: S102 - our own field names, checked identifiers
    return scope["_make"]  # type: ignore[no-any-return]
