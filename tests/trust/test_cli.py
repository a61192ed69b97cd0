"""``mscomm trust``: every subcommand in-process, and the main ones end to end."""

from __future__ import annotations

import io
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mscomm_sync.cli import main
from mscomm_sync.errors import ConfigurationError
from mscomm_sync.trust import PrivateKey, TrustStore, generate_private_key
from mscomm_sync.trust.document import parse
from mscomm_sync.trust.signing import generate_root, parse_roots

from .conftest import document, write

ROOT = Path(__file__).resolve().parents[2]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``mscomm ARGV`` in-process; return the status, and its own stdout and stderr."""
    capsys.readouterr()  # what fixtures printed is not this command's
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def mscomm(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run ``python -m mscomm_sync ARGS`` in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "mscomm_sync", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def loaded(path: Path) -> dict[str, Any]:
    """The file's JSON."""
    return json.loads(path.read_text())


def kids(path: Path, service: str) -> list[str]:
    """The key ids of ``service`` in the file, in order."""
    return [k["id"] for k in loaded(path)["services"][service]["keys"]]


def rows(table: str) -> list[list[str]]:
    """The cells of a table's lines (columns are two or more spaces apart)."""
    return [re.split(r" {2,}", line) for line in table.splitlines()]


@pytest.fixture(autouse=True)
def no_pinned_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees a root pinned in the environment unless it sets one."""
    monkeypatch.delenv("MSCOMM_TRUST_ROOT", raising=False)


@pytest.fixture
def trust_file(tmp_path: Path) -> Path:
    """An empty trust file, as `trust init` writes it."""
    path = tmp_path / "trust.json"
    assert main(["trust", "init", str(path)]) == 0
    return path


@pytest.fixture
def signer(monkeypatch: pytest.MonkeyPatch, root: tuple[str, str]) -> str:
    """The root's private key in ROOT_KEY; returns its public key."""
    monkeypatch.setenv("ROOT_KEY", root[0])
    return root[1]


def add(capsys: pytest.CaptureFixture[str], path: Path, service: str, *extra: str) -> str:
    """Add a fresh key to ``service``; return its key id."""
    key = generate_private_key()
    assert run(capsys, "trust", "add", *extra, str(path), service, "--", key.public.text)[0] == 0
    return key.kid


# -- init ---------------------------------------------------------------------------


def test_init_writes_an_empty_document(trust_file: Path) -> None:
    """`trust init` writes format mscomm-trust, version 1, serial 0, no services."""
    assert loaded(trust_file) == {
        "format": "mscomm-trust",
        "version": 1,
        "serial": 0,
        "services": {},
    }
    assert stat.S_IMODE(trust_file.stat().st_mode) == 0o644


def test_init_refuses_to_overwrite(
    capsys: pytest.CaptureFixture[str], trust_file: Path, billing: PrivateKey
) -> None:
    """An existing file is left alone, with exit status 1."""
    run(capsys, "trust", "add", str(trust_file), "billing", "--", billing.public.text)
    before = trust_file.read_bytes()
    status, _, err = run(capsys, "trust", "init", str(trust_file))
    assert status == 1
    assert "--force" in err
    assert trust_file.read_bytes() == before


def test_init_force_overwrites(
    capsys: pytest.CaptureFixture[str], trust_file: Path, billing: PrivateKey
) -> None:
    """--force replaces an existing file with an empty document."""
    run(capsys, "trust", "add", str(trust_file), "billing", "--", billing.public.text)
    assert run(capsys, "trust", "init", "--force", str(trust_file))[0] == 0
    assert loaded(trust_file)["services"] == {}


def test_init_in_a_missing_directory_fails(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A file that cannot be written is a failure (exit 2) naming it."""
    path = tmp_path / "nowhere" / "trust.json"
    status, _, err = run(capsys, "trust", "init", str(path))
    assert status == 2
    assert str(path) in err


# -- add ----------------------------------------------------------------------------


def test_add_appends_the_key_with_its_computed_id(
    capsys: pytest.CaptureFixture[str], trust_file: Path
) -> None:
    """A second key goes last; each entry's id is its key's id."""
    first = add(capsys, trust_file, "billing")
    key = generate_private_key()
    status, out, _ = run(capsys, "trust", "add", str(trust_file), "billing", "--", key.public.text)
    assert status == 0
    assert kids(trust_file, "billing") == [first, key.kid]
    assert loaded(trust_file)["services"]["billing"]["keys"][1] == {
        "id": key.kid,
        "public_key": key.public.text,
    }
    assert key.kid in out and f"callers seal to {first}" in out


def test_add_first_puts_the_key_first(capsys: pytest.CaptureFixture[str], trust_file: Path) -> None:
    """--first makes the new key the one callers seal to."""
    old = add(capsys, trust_file, "billing")
    key = generate_private_key()
    _, out, _ = run(
        capsys, "trust", "add", "--first", str(trust_file), "billing", "--", key.public.text
    )
    assert kids(trust_file, "billing") == [key.kid, old]
    assert f"callers seal to {key.kid}" in out
    trust = TrustStore(trust_file, environ={})
    assert trust.sealing_key("billing").kid == key.kid  # type: ignore[union-attr]


def test_add_creates_the_service_without_callers(
    capsys: pytest.CaptureFixture[str], trust_file: Path
) -> None:
    """A new service gets a keys list and no callers field."""
    add(capsys, trust_file, "orders")
    assert set(loaded(trust_file)["services"]["orders"]) == {"keys"}


@pytest.mark.parametrize(
    ("given", "written"),
    [("2027-06-30", "2027-06-30T00:00:00Z"), ("2027-06-30T12:34:56Z", "2027-06-30T12:34:56Z")],
)
def test_add_not_after(
    capsys: pytest.CaptureFixture[str], trust_file: Path, given: str, written: str
) -> None:
    """--not-after takes a date (midnight UTC) or a UTC time, written in the file's format."""
    add(capsys, trust_file, "billing", "--not-after", given)
    assert loaded(trust_file)["services"]["billing"]["keys"][0]["not_after"] == written


@pytest.mark.parametrize("given", ["2027-02-30", "30/06/2027", "2027-06-30T12:00:00+02:00"])
def test_add_refuses_a_bad_not_after(
    capsys: pytest.CaptureFixture[str], trust_file: Path, given: str
) -> None:
    """A --not-after that is not a real date in one of the two forms is a usage error."""
    key = generate_private_key()
    with pytest.raises(SystemExit) as caught:
        main(
            [
                "trust",
                "add",
                "--not-after",
                given,
                str(trust_file),
                "billing",
                "--",
                key.public.text,
            ]
        )
    assert caught.value.code == 2
    assert "--not-after" in capsys.readouterr().err


def test_adding_a_key_already_present_is_refused(
    capsys: pytest.CaptureFixture[str], trust_file: Path, billing: PrivateKey
) -> None:
    """The same key again, for the same or another service, exits 1 and changes nothing."""
    run(capsys, "trust", "add", str(trust_file), "billing", "--", billing.public.text)
    before = trust_file.read_bytes()
    for service in ("billing", "orders"):
        status, _, err = run(
            capsys, "trust", "add", str(trust_file), service, "--", billing.public.text
        )
        assert status == 1
        assert billing.kid in err and "billing" in err
    assert trust_file.read_bytes() == before


def test_add_refuses_a_malformed_public_key(
    capsys: pytest.CaptureFixture[str], trust_file: Path
) -> None:
    """A public key that does not parse exits 2, naming the argument."""
    status, _, err = run(capsys, "trust", "add", str(trust_file), "billing", "garbage")
    assert status == 2
    assert "PUBLIC_KEY" in err


def test_add_refuses_a_name_not_in_canonical_form(
    capsys: pytest.CaptureFixture[str], trust_file: Path, billing: PrivateKey
) -> None:
    """A service name such as Billing exits 2 and writes nothing."""
    status, _, _ = run(
        capsys, "trust", "add", str(trust_file), "Billing", "--", billing.public.text
    )
    assert status == 2
    assert loaded(trust_file)["services"] == {}


def test_an_edit_of_a_malformed_file_fails_and_leaves_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, billing: PrivateKey
) -> None:
    """A file that is not a valid trust document is not edited (exit 2)."""
    path = tmp_path / "trust.json"
    path.write_text('{"format": "something-else"}')
    status, _, err = run(capsys, "trust", "add", str(path), "billing", "--", billing.public.text)
    assert status == 2
    assert "not a valid trust file" in err
    assert path.read_text() == '{"format": "something-else"}'


def test_an_edit_of_a_missing_file_fails(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, billing: PrivateKey
) -> None:
    """Editing a file that does not exist is a failure (exit 2), not a new file."""
    path = tmp_path / "trust.json"
    assert run(capsys, "trust", "add", str(path), "billing", "--", billing.public.text)[0] == 2
    assert not path.exists()


# -- every edit: serial, signature, atomic writes ------------------------------------

EDITS = {
    "add": ["add", "{file}", "ledger", "--", "{key}"],
    "remove-key": ["remove", "{file}", "billing", "{kid}"],
    "remove-service": ["remove", "{file}", "billing"],
    "callers": ["callers", "{file}", "billing", "orders"],
    "clear-callers": ["callers", "{file}", "billing", "--clear"],
}


@pytest.fixture
def signed_file(trust_file: Path, signer: str, billing: PrivateKey) -> Path:
    """A signed trust file listing billing (two keys, callers [ledger]) at serial 3."""
    file = str(trust_file)
    assert main(["trust", "add", file, "billing", "--", billing.public.text]) == 0
    assert main(["trust", "add", file, "billing", "--", generate_private_key().public.text]) == 0
    assert main(["trust", "callers", file, "billing", "ledger"]) == 0
    assert main(["trust", "sign", file, "--root-key-from-env", "ROOT_KEY"]) == 0
    return trust_file


def edit_args(name: str, path: Path, billing: PrivateKey) -> list[str]:
    """The argv of edit ``name``."""
    values = {"file": str(path), "key": generate_private_key().public.text, "kid": billing.kid}
    return ["trust", *(a.format(**values) for a in EDITS[name])]


@pytest.mark.parametrize("edit", list(EDITS))
def test_every_edit_raises_the_serial_and_drops_the_signature(
    capsys: pytest.CaptureFixture[str], signed_file: Path, billing: PrivateKey, edit: str
) -> None:
    """After any change the serial is one higher, the file unsigned, and stderr says so."""
    assert "signature" in loaded(signed_file)
    status, _, err = run(capsys, *edit_args(edit, signed_file, billing))
    assert status == 0
    assert loaded(signed_file)["serial"] == 4
    assert "signature" not in loaded(signed_file)
    assert "serial 4" in err and "signature was dropped" in err and "trust sign" in err


@pytest.mark.parametrize("edit", list(EDITS))
def test_every_edit_keeps_the_files_mode(
    capsys: pytest.CaptureFixture[str], signed_file: Path, billing: PrivateKey, edit: str
) -> None:
    """A file made 0600 is still 0600 after the edit."""
    signed_file.chmod(0o600)
    run(capsys, *edit_args(edit, signed_file, billing))
    assert stat.S_IMODE(signed_file.stat().st_mode) == 0o600


def test_an_edit_replaces_the_file_whole(
    capsys: pytest.CaptureFixture[str], signed_file: Path, billing: PrivateKey
) -> None:
    """A reader that opened the old version reads it whole; no temporary file is left."""
    with open(signed_file, "rb") as reader:
        old = signed_file.read_bytes()
        run(capsys, *edit_args("add", signed_file, billing))
        assert reader.read() == old
    assert signed_file.read_bytes() != old
    assert sorted(p.name for p in signed_file.parent.iterdir()) == ["trust.json"]


def test_an_edited_file_is_refused_by_a_store_until_signed_again(
    capsys: pytest.CaptureFixture[str], signed_file: Path, signer: str, billing: PrivateKey
) -> None:
    """With the root pinned, a store refuses the edited file, and takes it once signed."""
    run(capsys, *edit_args("add", signed_file, billing))
    with pytest.raises(ConfigurationError, match="not signed"):
        TrustStore(signed_file, roots=parse_roots(signer), environ={})
    run(capsys, "trust", "sign", str(signed_file), "--root-key-from-env", "ROOT_KEY")
    assert TrustStore(signed_file, roots=parse_roots(signer), environ={}).serial == 4


# -- remove -------------------------------------------------------------------------


def test_remove_a_key(capsys: pytest.CaptureFixture[str], trust_file: Path) -> None:
    """Removing the first key makes the next one current, and says so."""
    first = add(capsys, trust_file, "billing")
    second = add(capsys, trust_file, "billing")
    status, out, _ = run(capsys, "trust", "remove", str(trust_file), "billing", first)
    assert status == 0
    assert kids(trust_file, "billing") == [second]
    assert f"callers seal to {second}" in out


def test_remove_a_service(capsys: pytest.CaptureFixture[str], trust_file: Path) -> None:
    """Without a key id, the whole service goes."""
    add(capsys, trust_file, "billing")
    add(capsys, trust_file, "orders")
    assert run(capsys, "trust", "remove", str(trust_file), "billing")[0] == 0
    assert list(loaded(trust_file)["services"]) == ["orders"]


@pytest.mark.parametrize("args", [["ledger"], ["billing", "0123456789abcdef"]])
def test_removing_nothing_is_refused(
    capsys: pytest.CaptureFixture[str], trust_file: Path, args: list[str]
) -> None:
    """An unknown service or key id exits 1, changes nothing, and lists what is there."""
    kid = add(capsys, trust_file, "billing")
    before = trust_file.read_bytes()
    status, _, err = run(capsys, "trust", "remove", str(trust_file), *args)
    assert status == 1
    assert "billing" in err and (kid in err or args == ["ledger"])
    assert trust_file.read_bytes() == before


# -- callers ------------------------------------------------------------------------


def test_callers_sets_the_list(capsys: pytest.CaptureFixture[str], trust_file: Path) -> None:
    """NAME... replaces the list, sorted and without repeats."""
    add(capsys, trust_file, "billing")
    run(capsys, "trust", "callers", str(trust_file), "billing", "shipping")
    run(capsys, "trust", "callers", str(trust_file), "billing", "orders", "ledger", "orders")
    assert loaded(trust_file)["services"]["billing"]["callers"] == ["ledger", "orders"]
    assert TrustStore(trust_file, environ={}).callers("billing") == {"ledger", "orders"}


def test_callers_with_no_name_means_no_one(
    capsys: pytest.CaptureFixture[str], trust_file: Path
) -> None:
    """No NAME writes an empty list: no service may call."""
    add(capsys, trust_file, "billing")
    _, out, _ = run(capsys, "trust", "callers", str(trust_file), "billing")
    assert loaded(trust_file)["services"]["billing"]["callers"] == []
    assert "no one" in out


def test_callers_clear_removes_the_field(
    capsys: pytest.CaptureFixture[str], trust_file: Path
) -> None:
    """--clear removes "callers": the store then says nothing about them."""
    add(capsys, trust_file, "billing")
    run(capsys, "trust", "callers", str(trust_file), "billing", "orders")
    assert run(capsys, "trust", "callers", str(trust_file), "billing", "--clear")[0] == 0
    assert "callers" not in loaded(trust_file)["services"]["billing"]
    assert TrustStore(trust_file, environ={}).callers("billing") is None


def test_callers_unchanged_writes_nothing(
    capsys: pytest.CaptureFixture[str], signed_file: Path
) -> None:
    """Setting the list it already has keeps the file, its serial and its signature."""
    before = signed_file.read_bytes()
    status, out, _ = run(capsys, "trust", "callers", str(signed_file), "billing", "ledger")
    assert status == 0 and "unchanged" in out
    assert signed_file.read_bytes() == before


def test_callers_of_an_unknown_service_is_refused(
    capsys: pytest.CaptureFixture[str], trust_file: Path
) -> None:
    """A service the file does not list exits 1."""
    assert run(capsys, "trust", "callers", str(trust_file), "billing", "orders")[0] == 1


@pytest.mark.parametrize("args", [["Orders"], ["orders", "--clear"]])
def test_callers_usage_errors(
    capsys: pytest.CaptureFixture[str], trust_file: Path, args: list[str]
) -> None:
    """A name not in canonical form, or names with --clear, exit 2."""
    add(capsys, trust_file, "billing")
    assert run(capsys, "trust", "callers", str(trust_file), "billing", *args)[0] == 2


# -- root and sign ----------------------------------------------------------------------


def test_root_prints_the_private_key_alone_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    """stdout is the private key; stderr the public key, root key id and MSCOMM_TRUST_ROOT."""
    status, out, err = run(capsys, "trust", "root")
    assert status == 0
    private = out.strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", private)
    public = re.search(r"public key (\S+)  root key id", err).group(1)  # type: ignore[union-attr]
    (pinned,) = parse_roots(public)
    assert f"root key id {pinned.kid}" in err
    assert "MSCOMM_TRUST_ROOT" in err and "offline" in err
    assert private not in err


def test_root_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """--json gives private key, public key and root key id, and the pair signs and verifies."""
    _, out, _ = run(capsys, "--json", "trust", "root")
    data = json.loads(out)
    assert parse_roots(data["public_key"])[0].kid == data["key_id"]
    from mscomm_sync.trust.signing import sign, verify

    signed = sign(document({}), data["private_key"], source="test")
    verify(parse(json.dumps(signed).encode()), parse_roots(data["public_key"]))


def test_sign_from_a_variable(
    capsys: pytest.CaptureFixture[str], trust_file: Path, signer: str
) -> None:
    """`sign --root-key-from-env` signs the file with that root and prints its key id."""
    status, out, _ = run(
        capsys, "trust", "sign", str(trust_file), "--root-key-from-env", "ROOT_KEY"
    )
    kid = parse_roots(signer)[0].kid
    assert status == 0
    assert kid in out
    assert loaded(trust_file)["signature"]["key_id"] == kid
    assert loaded(trust_file)["serial"] == 0  # signing is not an edit


def test_sign_from_stdin(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    trust_file: Path,
    root: tuple[str, str],
) -> None:
    """Without a variable, the root's private key is one line of standard input."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(root[0] + "\n"))
    assert run(capsys, "trust", "sign", str(trust_file))[0] == 0
    assert run(capsys, "trust", "verify", str(trust_file), f"--root={root[1]}")[0] == 0


def test_sign_with_nothing_on_stdin_fails(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, trust_file: Path
) -> None:
    """Empty standard input is an error pointing at --root-key-from-env."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    status, _, err = run(capsys, "trust", "sign", str(trust_file))
    assert status == 2
    assert "--root-key-from-env" in err


def test_sign_with_a_malformed_key_names_the_variable_not_the_value(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, trust_file: Path
) -> None:
    """A bad root private key exits 2 naming its variable, and the file is unchanged."""
    monkeypatch.setenv("ROOT_KEY", "my-root-secret-typo")
    before = trust_file.read_bytes()
    status, out, err = run(
        capsys, "trust", "sign", str(trust_file), "--root-key-from-env", "ROOT_KEY"
    )
    assert status == 2
    assert "ROOT_KEY" in err
    assert "my-root-secret-typo" not in out + err
    assert trust_file.read_bytes() == before


def test_sign_warns_when_the_root_is_not_pinned_here(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    trust_file: Path,
    signer: str,
) -> None:
    """Signing with a root that MSCOMM_TRUST_ROOT does not pin works, with a warning."""
    monkeypatch.setenv("MSCOMM_TRUST_ROOT", generate_root()[1])
    status, _, err = run(
        capsys, "trust", "sign", str(trust_file), "--root-key-from-env", "ROOT_KEY"
    )
    assert status == 0
    assert "warning" in err and "not one of the roots pinned" in err


# -- verify ---------------------------------------------------------------------------


def test_verify_a_signed_file(
    capsys: pytest.CaptureFixture[str], signed_file: Path, signer: str
) -> None:
    """A file signed by the root given with --root verifies: exit 0."""
    status, out, _ = run(capsys, "trust", "verify", str(signed_file), f"--root={signer}")
    assert status == 0
    assert "verified" in out and parse_roots(signer)[0].kid in out


def test_verify_uses_the_pinned_roots_by_default(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    signed_file: Path,
    signer: str,
) -> None:
    """Without --root, the roots in MSCOMM_TRUST_ROOT are used."""
    monkeypatch.setenv("MSCOMM_TRUST_ROOT", f"{generate_root()[1]},{signer}")
    status, out, _ = run(capsys, "trust", "verify", str(signed_file))
    assert status == 0
    assert "$MSCOMM_TRUST_ROOT" in out


def test_verify_a_tampered_file(
    capsys: pytest.CaptureFixture[str], signed_file: Path, signer: str
) -> None:
    """A signed file edited by hand fails verification: exit 1, saying the signature is bad."""
    doc = loaded(signed_file)
    doc["services"]["billing"]["callers"].append("mallory")
    write(signed_file, doc)
    status, _, err = run(capsys, "trust", "verify", str(signed_file), f"--root={signer}")
    assert status == 1
    assert "does not verify" in err


def test_verify_an_unsigned_file(
    capsys: pytest.CaptureFixture[str], trust_file: Path, signer: str
) -> None:
    """An unsigned file fails against a root: exit 1, saying it is not signed."""
    status, _, err = run(capsys, "trust", "verify", str(trust_file), f"--root={signer}")
    assert status == 1
    assert "not signed" in err


def test_verify_against_another_root(capsys: pytest.CaptureFixture[str], signed_file: Path) -> None:
    """A file signed by a root that is not given fails: exit 1, naming the signer."""
    status, _, err = run(
        capsys, "trust", "verify", str(signed_file), f"--root={generate_root()[1]}"
    )
    assert status == 1
    assert "not pinned" in err and loaded(signed_file)["signature"]["key_id"] in err


def test_verify_a_malformed_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, signer: str
) -> None:
    """A file that is not a trust document fails verification: exit 1."""
    path = tmp_path / "trust.json"
    path.write_text("[1, 2]")
    status, _, err = run(capsys, "trust", "verify", str(path), f"--root={signer}")
    assert status == 1
    assert "not a valid trust file" in err


def test_verify_without_any_root_only_parses(
    capsys: pytest.CaptureFixture[str], signed_file: Path
) -> None:
    """With no root at all, a file that parses passes, said to be not checked."""
    status, out, _ = run(capsys, "trust", "verify", str(signed_file))
    assert status == 0
    assert "not checked" in out and "signed by root" in out


@pytest.mark.parametrize("args", [["--root=not-a-root"], []])
def test_verify_usage_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, signer: str, args: list[str]
) -> None:
    """A malformed --root or a missing file is exit 2, not "not verified"."""
    path = tmp_path / "missing.json"
    if args:
        path = write(tmp_path / "trust.json", document({}))
    status, _, err = run(capsys, "trust", "verify", str(path), *args)
    assert status == 2
    assert ("--root" in err) if args else ("cannot read" in err)


def test_verify_json(capsys: pytest.CaptureFixture[str], signed_file: Path, signer: str) -> None:
    """--json reports serial, signer, verdict and reason as data, with the same exit status."""
    status, out, _ = run(capsys, "trust", "verify", "--json", str(signed_file), f"--root={signer}")
    assert status == 0
    assert json.loads(out) == {
        "file": str(signed_file),
        "valid": True,
        "serial": 3,
        "signed": True,
        "root_key_id": parse_roots(signer)[0].kid,
        "verified": True,
        "reason": None,
    }
    status, out, _ = run(
        capsys, "--json", "trust", "verify", str(signed_file), f"--root={generate_root()[1]}"
    )
    assert status == 1
    assert json.loads(out)["verified"] is False


# -- show -------------------------------------------------------------------------------


def test_show_lists_keys_in_order_with_their_state(
    capsys: pytest.CaptureFixture[str], trust_file: Path
) -> None:
    """Each key is a row: the first valid one current, later ones valid, past ones expired."""
    expired = add(capsys, trust_file, "billing", "--not-after", "2001-01-01")
    current = add(capsys, trust_file, "billing")
    valid = add(capsys, trust_file, "billing", "--not-after", "2999-12-31T23:59:59Z")
    lone = add(capsys, trust_file, "orders")
    run(capsys, "trust", "callers", str(trust_file), "billing", "orders", "ledger")
    status, out, _ = run(capsys, "trust", "show", str(trust_file))
    assert status == 0
    summary, *table = out.splitlines()
    assert summary.startswith(f"{trust_file}: serial 5, unsigned")
    assert rows("\n".join(table)) == [
        ["SERVICE", "KEY ID", "STATE", "NOT AFTER", "CALLERS"],
        ["billing", expired, "expired", "2001-01-01T00:00:00Z", "ledger,orders"],
        ["billing", current, "current", "-", "ledger,orders"],
        ["billing", valid, "valid", "2999-12-31T23:59:59Z", "ledger,orders"],
        ["orders", lone, "current", "-", "(unset)"],
    ]


def test_show_aligns_its_columns(capsys: pytest.CaptureFixture[str], trust_file: Path) -> None:
    """Every column starts at the same offset on every line of the table."""
    add(capsys, trust_file, "billing-eu-west-1")
    add(capsys, trust_file, "a")
    header, *lines = run(capsys, "trust", "show", str(trust_file))[1].splitlines()[1:]
    starts = [header.index(title) for title in ("KEY ID", "STATE", "NOT AFTER", "CALLERS")]
    assert len(lines) == 2
    for line in lines:
        assert [line[i - 2 : i] for i in starts] == ["  "] * 4
        assert " " not in [line[i] for i in starts]


def test_show_says_whether_the_signature_verifies(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    signed_file: Path,
    signer: str,
) -> None:
    """The summary says signed by which root, and verified or not against MSCOMM_TRUST_ROOT."""
    kid = parse_roots(signer)[0].kid
    first = run(capsys, "trust", "show", str(signed_file))[1].splitlines()[0]
    assert f"signed by root {kid}; not checked" in first
    monkeypatch.setenv("MSCOMM_TRUST_ROOT", signer)
    first = run(capsys, "trust", "show", str(signed_file))[1].splitlines()[0]
    assert f"signed by root {kid}; verified against $MSCOMM_TRUST_ROOT" in first
    monkeypatch.setenv("MSCOMM_TRUST_ROOT", generate_root()[1])
    status, out, _ = run(capsys, "trust", "show", str(signed_file))
    assert status == 0
    assert "NOT verified" in out.splitlines()[0]


def test_show_json(
    capsys: pytest.CaptureFixture[str], trust_file: Path, billing: PrivateKey
) -> None:
    """`mscomm --json trust show` gives serial, signature and services as data."""
    run(
        capsys,
        "trust",
        "add",
        "--not-after=2999-01-01",
        str(trust_file),
        "billing",
        "--",
        billing.public.text,
    )
    run(capsys, "trust", "callers", str(trust_file), "billing")
    data = json.loads(run(capsys, "--json", "trust", "show", str(trust_file))[1])
    assert data["serial"] == 2
    assert data["signed"] is False and data["verified"] is None
    assert data["services"] == {
        "billing": {
            "callers": [],
            "keys": [
                {
                    "id": billing.kid,
                    "public_key": billing.public.text,
                    "not_after": "2999-01-01T00:00:00Z",
                    "state": "current",
                }
            ],
        }
    }


def test_show_an_empty_file(capsys: pytest.CaptureFixture[str], trust_file: Path) -> None:
    """An empty document shows its serial and says it has no services."""
    status, out, _ = run(capsys, "trust", "show", str(trust_file))
    assert status == 0
    assert out.splitlines()[1:] == ["no services"]


def test_show_a_malformed_file_fails(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """show cannot show what does not parse: exit 2."""
    path = tmp_path / "trust.json"
    path.write_text("{}")
    assert run(capsys, "trust", "show", str(path))[0] == 2


def test_json_is_accepted_before_the_subcommand(
    capsys: pytest.CaptureFixture[str], trust_file: Path, billing: PrivateKey
) -> None:
    """`mscomm --json trust add` and `mscomm trust --json add` both print JSON."""
    _, out, _ = run(
        capsys, "--json", "trust", "add", str(trust_file), "billing", "--", billing.public.text
    )
    assert json.loads(out)["key_id"] == billing.kid
    _, out, _ = run(capsys, "trust", "--json", "remove", str(trust_file), "billing")
    assert json.loads(out) == {
        "file": str(trust_file),
        "serial": 2,
        "service": "billing",
        "removed": [billing.kid],
    }


def test_help_documents_the_exit_status() -> None:
    """`trust --help` says what 0, 1 and 2 mean."""
    result = mscomm("trust", "--help", env={})
    text = " ".join(result.stdout.split())
    assert result.returncode == 0
    assert "Exit status: 0 success, 1 already present" in text and "2 usage error" in text


# -- end to end ---------------------------------------------------------------------------


def test_end_to_end_a_signed_trust_file(tmp_path: Path) -> None:
    """init, add, callers, root, sign, verify (ok, then tampered) through `python -m`."""
    path = str(tmp_path / "trust.json")
    billing, orders = generate_private_key(), generate_private_key()
    assert mscomm("trust", "init", path, env={}).returncode == 0
    assert (
        mscomm("trust", "add", path, "billing", "--", billing.public.text, env={}).returncode == 0
    )
    assert mscomm("trust", "add", path, "orders", "--", orders.public.text, env={}).returncode == 0
    assert mscomm("trust", "callers", path, "billing", "orders", env={}).returncode == 0
    made = mscomm("trust", "root", env={})
    private = made.stdout.strip()
    public = re.search(r"public key (\S+)  root key id", made.stderr).group(1)  # type: ignore[union-attr]
    signed = mscomm("trust", "sign", path, env={}, stdin=private + "\n")
    assert signed.returncode == 0, signed.stderr
    pinned = {"MSCOMM_TRUST_ROOT": public}
    ok = mscomm("trust", "verify", path, env=pinned)
    assert ok.returncode == 0, ok.stderr
    trust = TrustStore(path, environ=pinned)
    assert trust.sealing_key("billing").kid == billing.kid  # type: ignore[union-attr]
    assert trust.callers("billing") == {"orders"}
    assert private not in ok.stdout + ok.stderr + signed.stdout + signed.stderr
    tampered = Path(path).read_text().replace('"orders"\n', '"orders", "mallory"\n', 1)
    assert tampered != Path(path).read_text()
    Path(path).write_text(tampered)
    bad = mscomm("trust", "verify", path, env=pinned)
    assert bad.returncode == 1
    assert "does not verify" in bad.stderr


def test_end_to_end_show_and_remove(tmp_path: Path) -> None:
    """show lists what add wrote, and remove takes a key out, through `python -m mscomm_sync`."""
    path = str(tmp_path / "trust.json")
    old, new = generate_private_key(), generate_private_key()
    mscomm("trust", "init", path, env={})
    mscomm("trust", "add", path, "billing", "--", old.public.text, env={})
    mscomm("trust", "add", "--first", path, "billing", "--", new.public.text, env={})
    shown = mscomm("trust", "show", path, env={})
    assert shown.returncode == 0
    assert [r[:3] for r in rows(shown.stdout)[2:]] == [
        ["billing", new.kid, "current"],
        ["billing", old.kid, "valid"],
    ]
    removed = mscomm("trust", "remove", path, "billing", old.kid, env={})
    assert removed.returncode == 0, removed.stderr
    assert "serial 3" in removed.stderr and "sign" in removed.stderr
    assert kids(Path(path), "billing") == [new.kid]
    again = mscomm("trust", "remove", path, "billing", old.kid, env={})
    assert again.returncode == 1


def dashed() -> PrivateKey:
    """A key pair whose public key begins with '-' (one in 64 do)."""
    while True:
        key = generate_private_key()
        if key.public.text.startswith("-"):
            return key


def test_a_public_key_that_begins_with_a_dash_goes_after_double_dash(
    capsys: pytest.CaptureFixture[str], trust_file: Path
) -> None:
    """`trust add FILE SERVICE -- -KEY` adds a key that argparse would take for an option."""
    key = dashed()
    status, _, _ = run(
        capsys, "trust", "add", "--first", str(trust_file), "billing", "--", key.public.text
    )
    assert status == 0
    assert kids(trust_file, "billing") == [key.kid]


def test_a_root_that_begins_with_a_dash_is_given_with_equals(
    capsys: pytest.CaptureFixture[str], trust_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--root=-KEY` is read as the root, not as an option."""
    while True:
        private, public = generate_root()
        if public.startswith("-"):
            break
    monkeypatch.setenv("ROOT_KEY", private)
    run(capsys, "trust", "sign", str(trust_file), "--root-key-from-env", "ROOT_KEY")
    assert run(capsys, "trust", "verify", str(trust_file), f"--root={public}")[0] == 0
