"""Tests for the ``mscomm`` command line (mscomm_sync.cli and ``python -m mscomm_sync``)."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import mscomm_sync
from mscomm_sync.cli import main
from mscomm_sync.keyring import Key

ROOT = Path(__file__).resolve().parents[1]
KEY_LINE = re.compile(r"[A-Za-z0-9_-]{43}")


def mscomm(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m mscomm_sync`` with ``args`` in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "mscomm_sync", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_valid_key(line: str) -> None:
    """Assert ``line`` is one key in the documented format that the keyring accepts."""
    assert KEY_LINE.fullmatch(line), line
    assert len(base64.urlsafe_b64decode(line + "=")) == 32
    Key.from_text(line, source="output")


def test_keygen_prints_one_valid_key() -> None:
    """`python -m mscomm_sync keygen` prints exactly one valid key on one line."""
    result = mscomm("keygen")
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("\n")
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert_valid_key(lines[0])
    assert result.stderr == ""


def test_keygen_count_prints_distinct_keys() -> None:
    """`keygen -n 3` prints three distinct valid keys, one per line."""
    result = mscomm("keygen", "-n", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert len(set(lines)) == 3
    for line in lines:
        assert_valid_key(line)


def test_keygen_in_process_prints_fresh_keys(capsys: pytest.CaptureFixture[str]) -> None:
    """main(["keygen"]) twice returns 0 and prints two different valid keys."""
    assert main(["keygen"]) == 0
    assert main(["keygen"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0] != lines[1]
    for line in lines:
        assert_valid_key(line)


def test_help_lists_keygen() -> None:
    """`--help` exits 0 and names the keygen subcommand."""
    result = mscomm("--help")
    assert result.returncode == 0
    assert "keygen" in result.stdout
    assert "usage: mscomm" in result.stdout


def test_keygen_help_explains_where_the_key_goes() -> None:
    """`keygen --help` says what a key is and where to put it."""
    result = mscomm("keygen", "--help")
    assert result.returncode == 0
    assert "_ENCRYPTION_KEY" in result.stdout
    assert "32" in result.stdout


def test_version_prints_the_package_version() -> None:
    """`mscomm --version` prints mscomm_sync.__version__ on stdout and exits 0."""
    result = mscomm("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"mscomm (mscomm_sync) {mscomm_sync.__version__}\n"


def test_keygen_json_prints_a_list_of_valid_keys(capsys: pytest.CaptureFixture[str]) -> None:
    """`--json keygen -n 2` (or `keygen --json`) prints a JSON list of two distinct keys."""
    assert main(["--json", "keygen", "-n", "2"]) == 0
    assert main(["keygen", "--json"]) == 0
    first, second = capsys.readouterr().out.splitlines()
    keys = json.loads(first)
    assert len(json.loads(second)) == 1
    assert len(set(keys)) == 2
    for key in keys:
        assert_valid_key(key)


def test_help_documents_the_exit_status() -> None:
    """`--help` and `registry --help` say what exit statuses 0, 1 and 2 mean."""
    for args in (["--help"], ["registry", "--help"]):
        result = mscomm(*args)
        assert result.returncode == 0
        text = " ".join(result.stdout.split())
        assert "Exit status: 0" in text and "1 not found" in text and "2 usage error" in text


def test_no_subcommand_is_a_usage_error() -> None:
    """Running without a subcommand exits 2 with usage on stderr and nothing on stdout."""
    result = mscomm()
    assert result.returncode == 2
    assert "usage" in result.stderr
    assert result.stdout == ""


def test_console_script_points_at_main() -> None:
    """The installed `mscomm` console script runs mscomm_sync.cli:main."""
    found = metadata.entry_points()
    # Python 3.9 returns a dict of groups; 3.10+ can select by group.
    scripts = (
        found.select(group="console_scripts")
        if hasattr(found, "select")
        else found.get("console_scripts", [])
    )
    targets = [ep.value for ep in scripts if ep.name == "mscomm"]
    assert set(targets) == {"mscomm_sync.cli:main"}  # an editable install may list it twice


def test_console_script_runs_keygen() -> None:
    """The `mscomm` executable next to this Python prints a key."""
    script = Path(sys.executable).with_name("mscomm")
    if not script.exists():
        pytest.skip("mscomm console script not installed next to this interpreter")
    result = subprocess.run(
        [str(script), "keygen"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert_valid_key(result.stdout.strip())
