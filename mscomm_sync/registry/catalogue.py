"""The in-memory view a registry answers lookups from.

A catalogue holds the instances a backend last read, plus this process's
health verdicts, and keeps one ready-made tuple per service so that a lookup
is a dict access and a list copy. Writers swap whole dicts; readers take no
lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

import attrs

from .base import Instance

__all__ = ["Catalogue"]

Key = tuple[str, str]


class Catalogue:
    """Instances by service, with the local health overlay applied."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, tuple[Instance, ...]] = {}
        self._unhealthy: frozenset[Key] = frozenset()
        self._views: dict[str, tuple[Instance, ...]] = {}

    def reset_lock(self) -> None:
        """Replace the lock (in a forked child, where another thread may have held it)."""
        self._lock = threading.Lock()

    def get(self, name: str) -> list[Instance]:
        """Return a new list of ``name``'s instances (empty if unknown)."""
        return list(self._views.get(name, ()))

    def services(self) -> list[str]:
        """Return the sorted names of services with at least one instance."""
        return sorted(self._views)

    def all(self) -> list[Instance]:
        """Return every instance, service by service."""
        views = self._views
        return [inst for name in sorted(views) for inst in views[name]]

    def replace(self, instances: Iterable[Instance]) -> None:
        """Replace the stored instances (as read from the backend).

        Args:
            instances: every registered instance; order within a service is kept.
        """
        grouped: dict[str, list[Instance]] = {}
        for inst in instances:
            grouped.setdefault(inst.service, []).append(inst)
        records = {name: tuple(group) for name, group in grouped.items()}
        with self._lock:
            self._records = records
            self._views = self._build(records, self._unhealthy)

    def upsert(self, inst: Instance) -> None:
        """Add ``inst`` or replace the instance with the same key, in place."""
        with self._lock:
            group = self._records.get(inst.service, ())
            if any(old.key == inst.key for old in group):
                group = tuple(inst if old.key == inst.key else old for old in group)
            else:
                group = (*group, inst)
            self._records = {**self._records, inst.service: group}
            self._views = self._build(self._records, self._unhealthy)

    def remove(self, key: Key) -> None:
        """Drop the instance ``(service, url)`` if present."""
        with self._lock:
            group = tuple(old for old in self._records.get(key[0], ()) if old.key != key)
            records = dict(self._records)
            if group:
                records[key[0]] = group
            else:
                records.pop(key[0], None)
            self._records = records
            self._views = self._build(records, self._unhealthy)

    def set_unhealthy(self, keys: Iterable[Key]) -> None:
        """Record which ``(service, url)`` pairs this process holds unhealthy."""
        unhealthy = frozenset(keys)
        with self._lock:
            if unhealthy == self._unhealthy:
                return
            self._unhealthy = unhealthy
            self._views = self._build(self._records, unhealthy)

    @staticmethod
    def _build(
        records: Mapping[str, tuple[Instance, ...]], unhealthy: frozenset[Key]
    ) -> dict[str, tuple[Instance, ...]]:
        views = dict(records)
        # Only services with an unhealthy instance need new records.
        for name in {service for service, _ in unhealthy}:
            group = records.get(name)
            if group is None:
                continue
            views[name] = tuple(
                attrs.evolve(inst, healthy=False) if inst.key in unhealthy else inst
                for inst in group
            )
        return views

    def __len__(self) -> int:
        return sum(len(group) for group in self._views.values())
