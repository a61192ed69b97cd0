"""Run users' test files against the mscomm_sync pytest plugin, with pytester."""

from __future__ import annotations

import sys
import textwrap
from importlib.metadata import entry_points
from typing import Callable

import pytest

pytest_plugins = ["pytester"]

PLUGIN = "mscomm_sync.testing.plugin"


def installed_plugins() -> dict[str, str]:
    """Return the ``pytest11`` entry points installed, as ``{name: module}``."""
    if sys.version_info >= (3, 10):
        found = entry_points(group="pytest11")
    else:  # pragma: no cover - Python 3.9 returns a dict of groups
        found = entry_points().get("pytest11", ())
    return {ep.name: ep.value for ep in found}


def plugin_args() -> tuple[str, ...]:
    """Return the arguments that load the plugin: none once the entry point is installed."""
    if PLUGIN in installed_plugins().values():
        return ()
    return ("-p", PLUGIN)


#: Plugins the inner runs do not need; hypothesis alone costs seconds per run.
QUIET = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest")

RunUserTests = Callable[..., pytest.RunResult]


@pytest.fixture
def run_user_tests(pytester: pytest.Pytester) -> RunUserTests:
    """Write a user's test module and run it in-process with the plugin loaded."""

    def run(source: str, *args: str) -> pytest.RunResult:
        pytester.makepyfile(test_user=textwrap.dedent(source))
        return pytester.runpytest(*plugin_args(), *QUIET, *args)

    return run
