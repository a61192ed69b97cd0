"""The snippets of README.md and docs/quickstart.md are the files in examples/, and they work.

Every fenced block of README.md is a copy, byte for byte, of a file in
``examples/`` or of a marked region of one (``# [start NAME]`` ...
``# [end NAME]``, or to the end of the file), named by the comment
``<!-- example: examples/PATH#NAME -->`` on the line before it; the docs
include the same files with ``literalinclude``. So neither can drift from
what is tested here: the quickstart's shell steps as typed, the Flask and
Django services under a real gunicorn on 127.0.0.1, the client calling them,
the logging recipes of docs/deployment.md, and the Celery task.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Optional

import pytest
import requests

from mscomm_sync import FileRegistry, MicroServiceClient, RequestRejectedError
from mscomm_sync.errors import ConfigurationError
from mscomm_sync.keyring import Keyring
from mscomm_sync.trust import Identity, TrustStore, generate_private_key
from mscomm_sync.trust.document import parse

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
README = ROOT / "README.md"
BIN = Path(sys.executable).parent
#: What examples/client_call.py prints, as its last comment says.
CALL_OUTPUT = "200 {'caller': 'orders', 'charged': 42}"
#: Generous bounds for a slow machine; a server is usually up in about a second.
STARTUP = 60.0
RUN = 60.0
#: A log line is written as the refusal is sent; this only bounds a failing test.
LOG_WAIT = 15.0

MARKER = re.compile(r"<!-- example: (examples/[^#\s]+)(?:#(\S+))? -->")
FENCE = re.compile(r"^```(\S*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
#: gunicorn's error-log format: "[2026-01-31 12:00:00 +0000] [pid] [LEVEL] logger: ..."
GUNICORN_LINE = r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[\d+\] \[WARNING\] "
#: Django's LOGGING recipe: "2026-01-31 12:00:00,123 [pid] [LEVEL] logger: ..."
DJANGO_LINE = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \[\d+\] \[WARNING\] "


# -- the snippets are the files ---------------------------------------------------


def region(path: Path, name: Optional[str]) -> str:
    """Return the text of ``path``, or of its region ``name`` (marker lines excluded)."""
    text = path.read_text()
    if name is None:
        return text
    lines = text.splitlines(keepends=True)
    start = [i for i, line in enumerate(lines) if line.strip() == f"# [start {name}]"]
    assert len(start) == 1, f"{path} needs exactly one '# [start {name}]'"
    end = next(
        (i for i in range(start[0] + 1, len(lines)) if lines[i].strip() == f"# [end {name}]"),
        len(lines),
    )
    return "".join(lines[start[0] + 1 : end])


def readme_blocks() -> list[tuple[int, Optional[re.Match[str]], str]]:
    """Return ``(line, marker or None, text)`` for every fenced block of README.md."""
    text = README.read_text()
    blocks = []
    for fence in FENCE.finditer(text):
        line = text.count("\n", 0, fence.start()) + 1
        before = text[: fence.start()].rstrip("\n").rsplit("\n", 1)[-1]
        blocks.append((line, MARKER.fullmatch(before.strip()), fence.group(2)))
    return blocks


def test_readme_has_code_blocks() -> None:
    """The README shows code (so the checks below check something)."""
    assert len(readme_blocks()) >= 5


def test_every_readme_block_names_its_example() -> None:
    """Each fenced block of the README is preceded by the marker naming its examples/ file."""
    unmarked = [line for line, marker, _ in readme_blocks() if marker is None]
    assert unmarked == [], f"README.md blocks at lines {unmarked} name no examples/ file"


def test_every_readme_block_is_its_example_byte_for_byte() -> None:
    """Each block is exactly its file or region, so it cannot drift from what runs here."""
    for line, marker, text in readme_blocks():
        assert marker is not None
        path, name = ROOT / marker.group(1), marker.group(2)
        assert path.is_file(), f"README.md line {line}: {path} does not exist"
        assert text == region(path, name), f"README.md line {line} differs from {marker.group(0)}"


def test_quickstart_includes_the_examples() -> None:
    """docs/quickstart.md shows the examples through literalinclude, not copies."""
    text = (ROOT / "docs" / "quickstart.md").read_text()
    included = set(re.findall(r"```\{literalinclude\} \.\./(examples/\S+)", text))
    assert {"examples/flask_service.py", "examples/client_call.py"} <= included, included
    assert "```python" not in text, "a Python snippet in the quickstart is not from examples/"


def test_install_lines_name_real_extras() -> None:
    """Every extra a ``pip install`` line of the examples names is one setup.cfg defines."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    extras = set(config["options.extras_require"])
    named = set()
    for path in EXAMPLES.rglob("*.sh"):
        for found in re.findall(r"pip install .*?\[([a-z,]+)\]", path.read_text()):
            named.update(found.split(","))
    assert named, "no pip install line found"
    assert named <= extras, named - extras


# -- running them ------------------------------------------------------------------


def clean_environ(**extra: str) -> dict[str, str]:
    """The test process's environment without any mscomm setting or key, plus ``extra``.

    The examples then run on exactly what their instructions give them, with
    the worktree's mscomm_sync first on the path and the venv's commands first
    on ``PATH``.
    """
    keys = ("_ENCRYPTION_KEY", "_PRIVATE_KEY", "_PRIVATE_KEY_FILE", "_PUBLIC_KEY")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MSCOMM_") and not k.endswith(keys) and not k.startswith("SERVICE_")
    }
    env["PYTHONPATH"] = str(ROOT)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Wait (bounded) until ``url/health`` answers 200; fail if the server exits first."""
    deadline = time.monotonic() + STARTUP
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if requests.get(url + "/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    pytest.fail(f"the server did not answer /health within {STARTUP:g}s:\n{log.read_text()}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the process group this test started (TERM, then KILL)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(15)


class Served:
    """A command that serves on ``port``, started in its own session, its output in a file."""

    def __init__(self, argv: list[str], *, env: Mapping[str, str], cwd: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = cwd / f"server-{port}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                argv, env=dict(env), cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        try:
            wait_healthy(self.url, self.proc, self.log)
        except BaseException:
            stop(self.proc)
            raise

    def output(self) -> str:
        """Everything the server printed so far (gunicorn's error log included)."""
        return self.log.read_text(errors="replace")

    def wait_for_line(self, pattern: str) -> str:
        """Return the first line matching ``pattern``, waiting (bounded) for it to be written."""
        deadline = time.monotonic() + LOG_WAIT
        while True:
            found = re.search(pattern, self.output(), re.MULTILINE)
            if found:
                return found.group(0)
            if time.monotonic() > deadline:
                pytest.fail(f"no line matching {pattern!r} in:\n{self.output()}")
            time.sleep(0.05)


def gunicorn(app: str, *, pythonpath: Path, env: Mapping[str, str], cwd: Path) -> Served:
    """gunicorn with the logging recipe of docs/deployment.md, as the quickstart runs it."""
    port = free_port()
    argv = [
        str(BIN / "gunicorn"), "-c", str(EXAMPLES / "gunicorn.conf.py"),
        "-w", "2", "-b", f"127.0.0.1:{port}", "--pythonpath", str(pythonpath), app,
    ]  # fmt: skip
    return Served(argv, env=env, cwd=cwd, port=port)


def run(argv: list[str], *, env: Mapping[str, str], cwd: Path) -> str:
    """Run a command to its end (bounded); return its output; fail on a non-zero exit."""
    done = subprocess.run(
        argv, env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=RUN, check=False
    )
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/make_keys.py's folder, with shipping added: trusted, but no caller of billing."""
    folder = tmp_path_factory.mktemp("keys") / "keys"
    run([sys.executable, str(EXAMPLES / "make_keys.py"), str(folder)], env=clean_environ(),
        cwd=folder.parent)  # fmt: skip
    trust = folder / "trust.json"
    document = json.loads(trust.read_text())
    shipping = generate_private_key()
    (folder / "shipping.key").write_text(shipping.text() + "\n")
    document["services"]["shipping"] = {
        "keys": [{"id": shipping.kid, "public_key": shipping.public.text}]
    }
    document["serial"] += 1
    trust.write_text(json.dumps(document))
    parse(trust.read_bytes())
    return folder


def service_environ(keys: Path, tmp: Path, service: str) -> dict[str, str]:
    """What a process of ``service`` is given: its own key file, the trust file, the registry."""
    return clean_environ(
        MSCOMM_TRUST=str(keys / "trust.json"),
        MSCOMM_REGISTRY=str(tmp / "registry.json"),
        MSCOMM_REPLAY_DB=str(tmp / "replay.table"),
        **{f"{service.upper()}_PRIVATE_KEY_FILE": str(keys / f"{service}.key")},
    )


@pytest.fixture(scope="module")
def flask_billing(keys: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """examples/flask_service.py under gunicorn, registered as billing."""
    tmp = tmp_path_factory.mktemp("flask")
    server = gunicorn("flask_service:app", pythonpath=EXAMPLES,
                      env=service_environ(keys, tmp, "billing"), cwd=tmp)  # fmt: skip
    try:
        FileRegistry(tmp / "registry.json").register("billing", server.url)
        yield server
    finally:
        stop(server.proc)


@pytest.fixture(scope="module")
def django_billing(keys: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The Django project of examples/django_service under gunicorn, registered as billing."""
    tmp = tmp_path_factory.mktemp("django")
    server = gunicorn("billing.wsgi", pythonpath=EXAMPLES / "django_service",
                      env=service_environ(keys, tmp, "billing"), cwd=tmp)  # fmt: skip
    try:
        FileRegistry(tmp / "registry.json").register("billing", server.url)
        yield server
    finally:
        stop(server.proc)


def registry_of(server: Served) -> Path:
    """The registry file ``server`` was registered in."""
    return server.log.parent / "registry.json"


def call_example(server: Served, keys: Path) -> str:
    """Run examples/client_call.py as orders against ``server``'s registry; return its output."""
    tmp = server.log.parent
    env = service_environ(keys, tmp, "orders")
    return run([sys.executable, str(EXAMPLES / "client_call.py")], env=env, cwd=tmp)


def client_as(service: str, keys: Path, server: Served) -> MicroServiceClient:
    """A client sealing as ``service`` with its key from ``keys`` and the trust file."""
    key_file = str(keys / f"{service}.key")
    identity = Identity(service, environ={f"{service.upper()}_PRIVATE_KEY_FILE": key_file})
    return MicroServiceClient(
        service, registry=FileRegistry(registry_of(server)), identity=identity,
        trust=TrustStore(keys / "trust.json", environ={}), keyring=Keyring.from_mapping({}),
    )  # fmt: skip


def charge(client: MicroServiceClient) -> requests.Response:
    return client.request(target_service="billing", endpoint="/api/v1/charge", method="POST",
                          payload={"amount": 42}, timeout=10)  # fmt: skip


def test_client_call_prints_what_its_comment_says() -> None:
    """The output the example promises in its last comment is the one checked below."""
    assert f"# {CALL_OUTPUT}" in (EXAMPLES / "client_call.py").read_text()


def test_quickstart_shell_steps_work_as_typed(tmp_path: Path) -> None:
    """The quickstart's two terminals, typed as written (the port aside): orders gets 200."""
    port = free_port()
    steps = {
        name: region(EXAMPLES / "quickstart.sh", name).replace("127.0.0.1:8001",
                                                                f"127.0.0.1:{port}")
        for name in ("billing", "orders")
    }  # fmt: skip
    (tmp_path / "examples").symlink_to(EXAMPLES)
    env = clean_environ(MSCOMM_REPLAY_DB=str(tmp_path / "replay.table"))
    billing = Served(["bash", "-euc", steps["billing"]], env=env, cwd=tmp_path, port=port)
    try:
        out = run(["bash", "-euc", steps["orders"]], env=env, cwd=tmp_path)
    finally:
        stop(billing.proc)
    assert out.splitlines()[-1] == CALL_OUTPUT, out
    assert "registered billing" in out, out
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == [
        "billing.key", "orders.key", "trust.json",
    ]  # fmt: skip


def test_gunicorn_conf_registers_the_instance_itself(keys: Path, tmp_path: Path) -> None:
    """With SERVICE_NAME and SERVICE_URL set, examples/gunicorn.conf.py registers billing
    once gunicorn listens, and orders reaches it by name."""
    port = free_port()
    env = service_environ(keys, tmp_path, "billing")
    env.update(SERVICE_NAME="billing", SERVICE_URL=f"http://127.0.0.1:{port}")
    argv = [
        str(BIN / "gunicorn"), "-c", str(EXAMPLES / "gunicorn.conf.py"), "-w", "1",
        "-b", f"127.0.0.1:{port}", "--pythonpath", str(EXAMPLES), "flask_service:app",
    ]  # fmt: skip
    server = Served(argv, env=env, cwd=tmp_path, port=port)
    try:
        [instance] = FileRegistry(tmp_path / "registry.json").get_instances("billing")
        assert instance.url == server.url
        assert call_example(server, keys).splitlines()[-1] == CALL_OUTPUT
    finally:
        stop(server.proc)


def test_make_keys_never_overwrites_keys(tmp_path: Path) -> None:
    """A second run of examples/make_keys.py keeps the keys the first one made."""
    argv = [sys.executable, str(EXAMPLES / "make_keys.py"), str(tmp_path / "keys")]
    run(argv, env=clean_environ(), cwd=tmp_path)
    first = (tmp_path / "keys" / "billing.key").read_text()
    assert "kept them" in run(argv, env=clean_environ(), cwd=tmp_path)
    assert (tmp_path / "keys" / "billing.key").read_text() == first
    assert (tmp_path / "keys" / "billing.key").stat().st_mode & 0o077 == 0


def test_flask_example_answers_orders(flask_billing: Served, keys: Path) -> None:
    """examples/client_call.py, run as orders, gets billing's sealed answer from Flask."""
    assert call_example(flask_billing, keys).splitlines()[-1] == CALL_OUTPUT


def test_flask_example_refusal_line_has_time_and_level(flask_billing: Served) -> None:
    """With examples/gunicorn.conf.py, a refusal is a WARNING line in gunicorn's format."""
    assert requests.post(flask_billing.url + "/api/v1/charge", timeout=10).status_code == 401
    flask_billing.wait_for_line(GUNICORN_LINE + r"mscomm_sync\.wsgi: refused 401: plaintext")


def test_unknown_caller_gets_401_and_only_billings_log_says_why(
    flask_billing: Served, keys: Path, tmp_path: Path
) -> None:
    """A caller whose public key billing does not know is refused 401; the reason is logged."""
    stranger = generate_private_key()
    client = MicroServiceClient(
        "carol", registry=FileRegistry(registry_of(flask_billing)),
        identity=Identity("carol", keys=[stranger]),
        trust=TrustStore(keys / "trust.json", environ={}), keyring=Keyring.from_mapping({}),
    )  # fmt: skip
    with client, pytest.raises(RequestRejectedError) as caught:
        charge(client)
    assert caught.value.status == 401
    flask_billing.wait_for_line(GUNICORN_LINE + r"mscomm_sync\.wsgi: refused 401: .*sender='carol'")


def test_trusted_service_not_named_as_caller_gets_403(flask_billing: Served, keys: Path) -> None:
    """shipping's key is trusted, but billing's callers do not name it: 403, and logged."""
    with (
        client_as("shipping", keys, flask_billing) as client,
        pytest.raises(RequestRejectedError) as caught,
    ):
        charge(client)
    assert caught.value.status == 403
    flask_billing.wait_for_line(GUNICORN_LINE + r"mscomm_sync\.wsgi: refused 403: caller not")


def test_caller_without_billings_public_key_fails_before_sending(
    flask_billing: Served, keys: Path
) -> None:
    """orders without the trust file raises ConfigurationError, and billing sees no request."""
    before = flask_billing.output().count("refused")
    identity = Identity(
        "orders", environ={"ORDERS_PRIVATE_KEY_FILE": str(keys / "orders.key")}
    )  # fmt: skip
    client = MicroServiceClient("orders", registry=FileRegistry(registry_of(flask_billing)),
                                identity=identity, trust=TrustStore(environ={}),
                                keyring=Keyring.from_mapping({}))  # fmt: skip
    with client, pytest.raises(ConfigurationError, match="no public key of it is trusted"):
        charge(client)
    assert flask_billing.output().count("refused") == before


def test_django_example_answers_orders(django_billing: Served, keys: Path) -> None:
    """examples/client_call.py, run as orders, gets the same answer from the Django project."""
    assert call_example(django_billing, keys).splitlines()[-1] == CALL_OUTPUT


def test_django_example_logging_gives_time_and_level(django_billing: Served) -> None:
    """The LOGGING recipe of the Django example writes refusals with a time and a level."""
    assert requests.post(django_billing.url + "/api/v1/charge", timeout=10).status_code == 401
    django_billing.wait_for_line(DJANGO_LINE + r"mscomm_sync\.wsgi: refused 401: plaintext")


def test_django_example_refuses_callers_settings_do_not_allow(
    django_billing: Served, keys: Path
) -> None:
    """settings.MSCOMM's allowed_callers refuses a verified shipping with 403, and logs it."""
    with (
        client_as("shipping", keys, django_billing) as client,
        pytest.raises(RequestRejectedError) as caught,
    ):
        charge(client)
    assert caught.value.status == 403
    django_billing.wait_for_line(DJANGO_LINE + r"mscomm_sync\.wsgi: refused 403: caller not")


def test_without_csrf_exempt_django_refuses_the_sealed_post(
    django_billing: Served, keys: Path, tmp_path: Path
) -> None:
    """The same view without @csrf_exempt: Django's CSRF check answers orders' sealed POST 403."""
    (tmp_path / "no_exempt_urls.py").write_text(
        "from django.urls import path\n"
        "from billing import views\n"
        "urlpatterns = [path('api/v1/charge', views.charge.__wrapped__),\n"
        "               path('health', views.health)]\n"
    )
    (tmp_path / "no_exempt_settings.py").write_text(
        "from billing.settings import *  # noqa\nROOT_URLCONF = 'no_exempt_urls'\n"
    )
    env = service_environ(keys, tmp_path, "billing")
    env.update(DJANGO_SETTINGS_MODULE="no_exempt_settings",
               PYTHONPATH=f"{tmp_path}{os.pathsep}{env['PYTHONPATH']}")  # fmt: skip
    server = gunicorn("billing.wsgi", pythonpath=EXAMPLES / "django_service", env=env,
                      cwd=tmp_path)  # fmt: skip
    try:
        FileRegistry(tmp_path / "registry.json").register("billing", server.url)
        with client_as("orders", keys, server) as client:
            resp = charge(client)
    finally:
        stop(server.proc)
    assert resp.status_code == 403
    assert b"CSRF" in resp.content
    assert "Forbidden (CSRF cookie not set.)" in server.output()


def test_celery_example_task_charges_through_the_client(flask_billing: Served, keys: Path) -> None:
    """examples/celery_tasks.py imports as a worker would, and its task, run eagerly
    (no broker), charges through billing."""
    tmp = flask_billing.log.parent
    env = service_environ(keys, tmp, "orders")
    env["PYTHONPATH"] = f"{EXAMPLES}{os.pathsep}{env['PYTHONPATH']}"
    code = "import celery_tasks; print(celery_tasks.charge.apply(args=(1001, 42)).get())"
    out = run([sys.executable, "-c", code], env=env, cwd=tmp)
    assert out.splitlines()[-1] == "{'caller': 'orders', 'charged': 42}", out
