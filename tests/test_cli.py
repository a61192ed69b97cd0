"""Tests for the ``mscomm`` command line (mscomm_sync.cli and ``python -m mscomm_sync``)."""

from __future__ import annotations

import base64
import io
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
from mscomm_sync.trust import Identity, PrivateKey, generate_private_key

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
    """Assert ``line`` is one v1 key in the documented format that the keyring accepts."""
    assert KEY_LINE.fullmatch(line), line
    assert len(base64.urlsafe_b64decode(line + "=")) == 32
    Key.from_text(line, source="output")


def assert_private_key(line: str) -> PrivateKey:
    """Assert ``line`` is one v2 private key in the documented format; return it."""
    assert KEY_LINE.fullmatch(line), line
    return PrivateKey.from_text(line, source="output")


def test_keygen_prints_one_private_key_on_stdout() -> None:
    """`python -m mscomm_sync keygen` prints one v2 private key alone on stdout."""
    result = mscomm("keygen")
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("\n")
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert_private_key(lines[0])


def test_keygen_prints_the_public_half_and_where_each_goes_on_stderr() -> None:
    """stderr has the public key and key id, and names <NAME>_PRIVATE_KEY and _PUBLIC_KEY."""
    result = mscomm("keygen")
    key = assert_private_key(result.stdout.strip())
    assert f"public key {key.public.text}  key id {key.kid}" in result.stderr
    assert "<NAME>_PRIVATE_KEY" in result.stderr and "secret" in result.stderr
    assert "trust file" in result.stderr and "<NAME>_PUBLIC_KEY" in result.stderr
    assert key.text() not in result.stderr


def test_keygen_output_sets_a_private_key_variable() -> None:
    """BILLING_PRIVATE_KEY=$(mscomm keygen) gives billing the key pair keygen reported."""
    made = mscomm("keygen")
    environ = {"BILLING_PRIVATE_KEY": made.stdout.rstrip("\n")}
    identity = Identity("billing", environ=environ)
    assert f"key id {identity.current.kid}" in made.stderr


def test_keygen_count_prints_distinct_keys() -> None:
    """`keygen -n 3` prints three distinct private keys, their public keys in the same order."""
    result = mscomm("keygen", "-n", "3")
    assert result.returncode == 0, result.stderr
    keys = [assert_private_key(line) for line in result.stdout.splitlines()]
    assert len({k.kid for k in keys}) == 3
    publics = re.findall(r"public key (\S+)  key id", result.stderr)
    assert publics == [k.public.text for k in keys]


def test_keygen_in_process_prints_fresh_keys(capsys: pytest.CaptureFixture[str]) -> None:
    """main(["keygen"]) twice returns 0 and prints two different private keys."""
    assert main(["keygen"]) == 0
    assert main(["keygen"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0] != lines[1]
    for line in lines:
        assert_private_key(line)


def test_keygen_v1_prints_a_shared_key_and_its_key_id() -> None:
    """`keygen --v1` prints one v1 key on stdout, and its key id and variable on stderr."""
    result = mscomm("keygen", "--v1")
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert_valid_key(line)
    assert f"key id {Key.from_text(line, source='output').kid}" in result.stderr
    assert "<NAME>_ENCRYPTION_KEY" in result.stderr
    assert line not in result.stderr


def test_keygen_v1_count_prints_distinct_keys(capsys: pytest.CaptureFixture[str]) -> None:
    """`keygen --v1 -n 3` prints three distinct v1 keys, one per line."""
    assert main(["keygen", "--v1", "-n", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(set(lines)) == 3
    for line in lines:
        assert_valid_key(line)


def test_help_lists_keygen() -> None:
    """`--help` exits 0 and names the keygen, key and trust subcommands."""
    result = mscomm("--help")
    assert result.returncode == 0
    for name in ("keygen", "key", "trust", "registry"):
        assert name in result.stdout
    assert "usage: mscomm" in result.stdout


def test_keygen_help_explains_where_the_key_goes() -> None:
    """`keygen --help` says what a key is and where each kind goes."""
    result = mscomm("keygen", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "_PRIVATE_KEY" in text and "_PUBLIC_KEY" in text
    assert "--v1" in text and "_ENCRYPTION_KEY" in text
    assert "32" in text


def test_keygen_help_rotates_v2_by_publishing_first_and_v1_by_order() -> None:
    """`keygen --help` gives v2's rotation (the new private key second, its public key
    published first, then the switch) and keeps v1's advice (the new key first) for --v1."""
    text = " ".join(mscomm("keygen", "--help").stdout.split())
    v2, v1 = text.split("With --v1")
    assert "OLD,NEW" in v2 and "trust add --first" in v2 and "trust remove" in v2
    assert v2.index("trust add --first") < v2.index("only NEW") < v2.index("trust remove")
    assert "put the new key first" not in v2
    assert "NEW,OLD" in v1 and "_ENCRYPTION_KEY" in v1


def test_version_prints_the_package_version() -> None:
    """`mscomm --version` prints mscomm_sync.__version__ on stdout and exits 0."""
    result = mscomm("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"mscomm (mscomm_sync) {mscomm_sync.__version__}\n"


def test_keygen_json_prints_one_object_per_pair(capsys: pytest.CaptureFixture[str]) -> None:
    """`--json keygen -n 2` (or `keygen --json`) prints an object per key pair, one per line."""
    assert main(["--json", "keygen", "-n", "2"]) == 0
    assert main(["keygen", "--json"]) == 0
    captured = capsys.readouterr()
    objects = [json.loads(line) for line in captured.out.splitlines()]
    assert len(objects) == 3
    assert len({o["private_key"] for o in objects}) == 3
    for data in objects:
        key = assert_private_key(data["private_key"])
        assert data == {"private_key": key.text(), "public_key": key.public.text, "key_id": key.kid}
    assert captured.err == ""


def test_keygen_v1_json_prints_a_list_of_valid_keys(capsys: pytest.CaptureFixture[str]) -> None:
    """`--json keygen --v1 -n 2` prints a JSON list of two distinct v1 keys, as before v2."""
    assert main(["--json", "keygen", "--v1", "-n", "2"]) == 0
    keys = json.loads(capsys.readouterr().out)
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
        assert "not verified" in text or args == ["registry", "--help"]


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
    assert_private_key(result.stdout.strip())


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``mscomm ARGV`` in-process; return the status, stdout and stderr."""
    capsys.readouterr()
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_key_public_reads_the_private_key_from_a_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`key public --from-env VAR` prints the public key, its key id on stderr, never the key."""
    key = generate_private_key()
    monkeypatch.setenv("BILLING_PRIVATE_KEY", key.text())
    status, out, err = run(capsys, "key", "public", "--from-env", "BILLING_PRIVATE_KEY")
    assert status == 0
    assert out == key.public.text + "\n"
    assert err == f"key id {key.kid}\n"


def test_key_public_reads_one_line_of_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --from-env, the private key is one line of standard input."""
    key = generate_private_key()
    monkeypatch.setattr(sys, "stdin", io.StringIO(key.text() + "\nignored\n"))
    status, out, _ = run(capsys, "key", "public")
    assert status == 0
    assert out == key.public.text + "\n"


def test_key_public_of_a_rotating_variable_prints_each(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """NEW,OLD prints both public keys, the current one first."""
    new, old = generate_private_key(), generate_private_key()
    monkeypatch.setenv("BILLING_PRIVATE_KEY", f"{new.text()},{old.text()}")
    status, out, _ = run(capsys, "--json", "key", "public", "--from-env", "BILLING_PRIVATE_KEY")
    assert status == 0
    assert [json.loads(line) for line in out.splitlines()] == [
        {"public_key": new.public.text, "key_id": new.kid},
        {"public_key": old.public.text, "key_id": old.kid},
    ]


def test_key_public_never_takes_the_key_from_the_command_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A private key given as an argument is a usage error: argv is visible to every user."""
    with pytest.raises(SystemExit) as caught:
        main(["key", "public", generate_private_key().text()])
    assert caught.value.code == 2


@pytest.mark.parametrize("command", [["key", "public", "--from-env"], ["key", "id", "--from-env"]])
def test_a_malformed_private_key_names_the_variable_not_the_value(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    """A bad key in the variable exits 2 naming the variable, and no part of the value."""
    monkeypatch.setenv("BILLING_PRIVATE_KEY", "hunter2-is-not-a-key")
    status, out, err = run(capsys, *command, "BILLING_PRIVATE_KEY")
    assert status == 2
    assert "BILLING_PRIVATE_KEY" in err
    assert "hunter2" not in out + err


def test_an_unset_variable_is_named(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--from-env VAR` with VAR unset exits 2 saying so."""
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    status, _, err = run(capsys, "key", "public", "--from-env", "NO_SUCH_KEY")
    assert status == 2
    assert "NO_SUCH_KEY is not set" in err


def test_key_public_with_empty_stdin_fails(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing on standard input is an error pointing at --from-env."""
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n"))
    status, _, err = run(capsys, "key", "public")
    assert status == 2
    assert "--from-env" in err


def test_key_id_of_a_public_key(capsys: pytest.CaptureFixture[str]) -> None:
    """`key id --public=KEY` prints that key's id."""
    key = generate_private_key()
    assert run(capsys, "key", "id", f"--public={key.public.text}") == (0, key.kid + "\n", "")


def test_key_id_of_a_private_key(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`key id --from-env VAR` prints the id of each v2 private key in VAR."""
    new, old = generate_private_key(), generate_private_key()
    monkeypatch.setenv("BILLING_PRIVATE_KEY", f"{new.text()},{old.text()}")
    status, out, _ = run(capsys, "key", "id", "--from-env", "BILLING_PRIVATE_KEY")
    assert (status, out.splitlines()) == (0, [new.kid, old.kid])


def test_key_id_of_a_v1_key(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`key id --v1-from-env VAR` prints the v1 key id, as the keyring computes it."""
    from mscomm_sync.keyring import generate_key

    secret = generate_key()
    monkeypatch.setenv("BILLING_ENCRYPTION_KEY", secret)
    status, out, _ = run(capsys, "--json", "key", "id", "--v1-from-env", "BILLING_ENCRYPTION_KEY")
    assert status == 0
    assert json.loads(out) == {"key_id": Key.from_text(secret, source="test").kid}
    assert secret not in out


def test_key_id_of_a_malformed_v1_key_names_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A passphrase in a v1 variable exits 2 naming the variable, not the passphrase."""
    monkeypatch.setenv("BILLING_ENCRYPTION_KEY", "correct-horse-battery")
    status, out, err = run(capsys, "key", "id", "--v1-from-env", "BILLING_ENCRYPTION_KEY")
    assert status == 2
    assert "BILLING_ENCRYPTION_KEY" in err and "correct-horse" not in out + err


@pytest.mark.parametrize(
    "argv", [["key", "id"], ["key", "id", "--public=x", "--from-env", "X"], ["key"]]
)
def test_key_usage_errors(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    """`key id` needs exactly one source; `key` needs an action: otherwise exit 2."""
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2


def test_a_public_key_that_begins_with_a_dash_is_given_with_equals(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`key id --public=-KEY` reads the key, which argparse would otherwise take for an option."""
    while True:
        key = generate_private_key()
        if key.public.text.startswith("-"):
            break
    assert run(capsys, "key", "id", f"--public={key.public.text}")[1] == key.kid + "\n"
