"""Tests of how the pytest plugin is installed and loaded."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from .conftest import PLUGIN, QUIET, RunUserTests, installed_plugins, plugin_args

FIXTURES = (
    "mscomm_keys",
    "mscomm_registry",
    "mscomm_service",
    "mscomm_responses",
    "mscomm_mock",
    "mscomm_client",
)


def test_entry_point_registers_the_plugin() -> None:
    """Installing the package registers the plugin as the pytest11 entry point ``mscomm_sync``."""
    assert installed_plugins().get("mscomm_sync") == PLUGIN


def test_importing_the_plugin_imports_no_framework() -> None:
    """Importing the plugin imports no web framework, Celery, werkzeug or responses."""
    probe = textwrap.dedent(
        f"""
        import json, sys
        import {PLUGIN}
        print(json.dumps(sorted(sys.modules)))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    heavy = {"flask", "django", "celery", "kombu", "werkzeug", "responses", "gunicorn"}
    loaded = {name.split(".")[0] for name in json.loads(out.stdout)}
    assert loaded.isdisjoint(heavy), sorted(loaded & heavy)


def test_every_fixture_is_documented(pytester: pytest.Pytester) -> None:
    """``pytest --fixtures`` lists every mscomm fixture, each with a docstring."""
    pytester.makepyfile(test_empty="def test_nothing():\n    pass\n")
    result = pytester.runpytest(*plugin_args(), *QUIET, "--fixtures")
    lines = result.stdout.lines
    for name in FIXTURES:
        [at] = [i for i, line in enumerate(lines) if line.startswith(f"{name} -- ")]
        assert lines[at + 1].strip(), f"{name} has no docstring"
        assert "no docstring available" not in lines[at + 1]


def test_a_user_test_without_the_fixtures_is_untouched(run_user_tests: RunUserTests) -> None:
    """A test that uses no mscomm fixture gets no mscomm keys, registry or mock."""
    result = run_user_tests(
        """
        import os

        import pytest
        import requests

        from mscomm_sync.errors import ConfigurationError
        from mscomm_sync.registry import get_registry

        def environ():
            return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}


        ENVIRON = environ()


        def test_plain():
            assert environ() == ENVIRON
            assert requests.adapters.HTTPAdapter.send.__module__ == "requests.adapters"
            with pytest.raises(ConfigurationError):
                get_registry()
        """
    )
    result.assert_outcomes(passed=1)
