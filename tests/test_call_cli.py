"""``mscomm call``: a sealed call from the shell, run as a real subprocess against a real service.

billing runs behind the real middleware (protocol v2 keys, idempotency keys
honoured) under a real threaded server on 127.0.0.1, registered in a file
registry. Each test runs ``python -m mscomm_sync call ...`` in a fresh
interpreter whose environment holds orders' private key and billing's public
key, as orders' own would, and checks what it prints and its exit status.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest
from support.fleet import Fleet

from mscomm_sync.keyring import Keyring
from mscomm_sync.registry import FileRegistry
from mscomm_sync.replay import MemoryReplayStore
from mscomm_sync.testing import LiveServer
from mscomm_sync.trust import generate_private_key
from mscomm_sync.wsgi import EncryptionMiddleware

ROOT = Path(__file__).resolve().parents[1]
#: Bounds a failing run only; a call takes well under a second.
RUN = 60.0
#: How long the slow handler waits at most for the test to let it go.
HOLD = 30.0


class Billing:
    """billing's app: echoes what it was given, counts charges, can be held."""

    def __init__(self) -> None:
        self.charges = 0
        self.release = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        path = environ["PATH_INFO"]
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        if path == "/echo":
            answer = {
                "method": environ["REQUEST_METHOD"],
                "caller": environ.get("mscomm.caller"),
                "content_type": environ.get("CONTENT_TYPE"),
                "body": body.hex(),
                "query": environ.get("QUERY_STRING"),
                "trace": environ.get("HTTP_X_TRACE"),
            }
            start_response(
                "201 Created", [("Content-Type", "application/json"), ("X-Answer", "sealed")]
            )
            return [json.dumps(answer).encode()]
        if path == "/charge":
            with self._lock:
                self.charges += 1
                count = self.charges
            start_response("201 Created", [("Content-Type", "application/json")])
            return [json.dumps({"charge": count}).encode()]
        if path == "/slow":
            self.release.wait(HOLD)
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"late"]
        start_response("404 Not Found", [("Content-Type", "application/json")])
        return [b'{"error": "no such route"}']


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return Fleet("orders", "billing")


@pytest.fixture
def app() -> Iterator[Billing]:
    billing = Billing()
    yield billing
    billing.release.set()


@pytest.fixture
def registry(tmp_path: Path, fleet: Fleet, app: Billing) -> Iterator[Path]:
    """billing served and registered; the registry file's path."""
    middleware = EncryptionMiddleware(
        app,
        "billing",
        identity=fleet.identity("billing"),
        trust=fleet.trust("orders"),
        keyring=Keyring.from_mapping({}),
        versions=("2",),
        allowed_callers=["orders"],
        replay_store=MemoryReplayStore(),
        idempotency=True,  # the host-wide store: under the tests' MSCOMM_IDEMPOTENCY_DB
    )
    path = tmp_path / "registry.json"
    with LiveServer(middleware) as server, FileRegistry(path) as reg:
        reg.register("billing", server.url)
        yield path


def environment(fleet: Fleet, registry: Optional[Path], **extra: str) -> dict[str, str]:
    """orders' environment: its private key, billing's public key, the registry."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith(("_PRIVATE_KEY", "_PUBLIC_KEY", "_ENCRYPTION_KEY"))
        and k not in ("SERVICE_NAME", "MSCOMM_TRUST", "MSCOMM_REGISTRY")
    }
    env.update(fleet.environ("billing", private=["orders"]))
    if registry is not None:
        env["MSCOMM_REGISTRY"] = str(registry)
    env.update(extra)
    return env


def mscomm(
    env: dict[str, str], *args: str, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m mscomm_sync ARGS`` from the worktree root in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "mscomm_sync", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        timeout=RUN,
        check=False,
    )


def fields(stderr: bytes) -> dict[str, str]:
    """The ``name: value`` lines of an error report (the message line aside)."""
    lines = stderr.decode().splitlines()
    return dict(line.split(": ", 1) for line in lines if not line.startswith("mscomm: "))


def head(stdout: bytes) -> dict[str, str]:
    """The headers --include printed, by lower-case name."""
    lines = stdout.partition(b"\n\n")[0].decode().split("\n")[1:]
    return {name.lower(): value for name, _, value in (line.partition(": ") for line in lines)}


# -- calls that are answered -------------------------------------------------------------


def test_a_call_prints_the_opened_answer_and_exits_0(fleet: Fleet, registry: Path) -> None:
    """A POST with --json reaches billing sealed, as orders, and its answer body is printed."""
    body = '{"amount": 42}'
    result = mscomm(
        environment(fleet, registry), "call", "billing", "post", "/echo?x=1", "--json", body,
        "--as", "orders",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert (answer["method"], answer["caller"], answer["query"]) == ("POST", "orders", "x=1")
    assert answer["content_type"] == "application/json"
    assert bytes.fromhex(answer["body"]) == body.encode()
    assert result.stderr == b""


def test_service_name_names_the_caller_without_as(fleet: Fleet, registry: Path) -> None:
    """With no --as, the call is made as $SERVICE_NAME."""
    result = mscomm(
        environment(fleet, registry, SERVICE_NAME="orders"), "call", "billing", "GET", "/echo"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["caller"] == "orders"


def test_an_http_error_status_exits_1_and_still_prints_the_body(
    fleet: Fleet, registry: Path
) -> None:
    """A sealed 404 from the app is an answer: its body is printed, and the exit status is 1."""
    result = mscomm(
        environment(fleet, registry), "call", "billing", "GET", "/nowhere", "--as", "orders"
    )
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout) == {"error": "no such route"}


def test_include_prints_the_status_line_and_the_sealed_answer_headers(
    fleet: Fleet, registry: Path
) -> None:
    """--include prints the status line, then the answer's (sealed) headers, a blank line,
    the body; repeated -H headers reach the app joined."""
    result = mscomm(
        environment(fleet, registry), "call", "billing", "GET", "/echo", "--as", "orders",
        "--include", "-H", "X-Trace: abc", "-H", "x-trace: def",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"HTTP/1.1 201 Created\n")
    names = head(result.stdout)
    body = result.stdout.partition(b"\n\n")[2]
    assert names["x-answer"] == "sealed"
    assert names["content-type"] == "application/json"
    assert names["content-length"] == str(len(body))
    assert not any(name.startswith("x-mscomm-seal") for name in names)
    assert json.loads(body)["trace"] == "abc, def"


def test_data_from_a_file_is_sent_byte_for_byte(
    fleet: Fleet, registry: Path, tmp_path: Path
) -> None:
    """--data @FILE sends the file's bytes as they are, as application/octet-stream;
    -H Content-Type overrides that type."""
    data = bytes(range(256)) * 4
    path = tmp_path / "body.bin"
    path.write_bytes(data)
    env = environment(fleet, registry)
    plain = mscomm(env, "call", "billing", "PUT", "/echo", "--as", "orders", "--data", f"@{path}")
    assert plain.returncode == 0, plain.stderr
    answer = json.loads(plain.stdout)
    assert (bytes.fromhex(answer["body"]), answer["content_type"]) == (
        data,
        "application/octet-stream",
    )
    typed = mscomm(
        env, "call", "billing", "PUT", "/echo", "--as", "orders", "-d", "@-",
        "-H", "Content-Type: application/x-thing",
        stdin=data,
    )  # fmt: skip
    answer = json.loads(typed.stdout)
    assert (bytes.fromhex(answer["body"]), answer["content_type"]) == (data, "application/x-thing")


def test_an_idempotency_key_makes_a_repeat_return_the_first_answer(
    fleet: Fleet, registry: Path, app: Billing
) -> None:
    """Two calls with the same --idempotency-key run the handler once; the second is the
    first's answer, marked replayed."""
    key = f"charge-{uuid.uuid4().hex}"
    env = environment(fleet, registry)
    args = ("call", "billing", "POST", "/charge", "--as", "orders", "--json", '{"amount": 5}')
    first = mscomm(env, *args, "--idempotency-key", key, "--include")
    again = mscomm(env, *args, "--idempotency-key", key, "--include")
    assert (first.returncode, again.returncode) == (0, 0), (first.stderr, again.stderr)
    assert app.charges == 1
    assert head(first.stdout)["x-mscomm-idempotency"] == "kept"
    assert head(again.stdout)["x-mscomm-idempotency"] == "replayed"
    assert first.stdout.partition(b"\n\n")[2] == again.stdout.partition(b"\n\n")[2]
    mscomm(env, *args)  # no key: it runs again
    assert app.charges == 2


def test_global_json_prints_the_answer_as_one_object(fleet: Fleet, registry: Path) -> None:
    """The global --json prints status, reason, headers and body as one JSON object."""
    result = mscomm(
        environment(fleet, registry), "--json", "call", "billing", "DELETE", "/nowhere",
        "--as", "orders",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    answer = json.loads(result.stdout)
    assert (answer["status"], answer["reason"]) == (404, "Not Found")
    assert answer["headers"]["Content-Type"] == "application/json"
    assert json.loads(answer["body"]) == {"error": "no such route"}


# -- calls that fail -----------------------------------------------------------------------


def test_a_refusal_exits_3_with_the_error_and_its_fields(fleet: Fleet, registry: Path) -> None:
    """A caller with the wrong private key gets exit 3, the message, and one line per field:
    the key ids sealed with among them; never the key."""
    wrong = generate_private_key()
    env = environment(fleet, registry, ORDERS_PRIVATE_KEY=wrong.text())
    result = mscomm(env, "call", "billing", "POST", "/echo", "--as", "orders", "--json", "{}")
    assert result.returncode == 3
    assert result.stdout == b""
    stderr = result.stderr.decode()
    assert "mscomm: error: service 'billing' rejected the request with HTTP 401" in stderr
    assert "logger mscomm_sync.wsgi" in stderr
    found = fields(result.stderr)
    billing_kid = fleet.keys["billing"][0].kid
    assert found == {
        "error": "RequestRejectedError",
        "delivery": "answered",
        "service": "billing",
        "status": "401",
        "caller": "orders",
        "key_id": f"{wrong.kid}-{billing_kid}",
        "version": "2",
    }
    assert wrong.text() not in stderr


def test_a_refusal_with_global_json_is_one_json_object_on_stderr(
    fleet: Fleet, registry: Path
) -> None:
    """With the global --json, stderr holds exactly one JSON object: type, message, fields."""
    env = environment(fleet, registry, ORDERS_PRIVATE_KEY=generate_private_key().text())
    result = mscomm(env, "--json", "call", "billing", "GET", "/echo", "--as", "orders")
    assert result.returncode == 3
    report = json.loads(result.stderr)
    assert (report["error"], report["status"], report["version"]) == (
        "RequestRejectedError",
        401,
        "2",
    )
    assert report["message"].startswith("service 'billing' rejected the request with HTTP 401")
    assert report["delivery"] == "answered" and report["key_id"].endswith(
        fleet.keys["billing"][0].kid
    )


def test_an_unknown_service_exits_3_naming_the_registry(fleet: Fleet, registry: Path) -> None:
    """A service nobody registered gives exit 3, ServiceNotFoundError and the registry read."""
    result = mscomm(environment(fleet, registry), "call", "ledger", "GET", "/x", "--as", "orders")
    assert result.returncode == 3
    found = fields(result.stderr)
    assert (found["error"], found["service"], found["registry"]) == (
        "ServiceNotFoundError",
        "ledger",
        str(registry),
    )
    assert f"mscomm registry list --registry {registry}" in result.stderr.decode()


def test_the_global_registry_option_is_read_and_never_created(
    fleet: Fleet, registry: Path, tmp_path: Path
) -> None:
    """--registry before `call` wins over $MSCOMM_REGISTRY; a missing file is named, not made."""
    missing = tmp_path / "elsewhere" / "registry.json"
    result = mscomm(
        environment(fleet, registry), "--registry", str(missing), "call", "billing", "GET",
        "/echo", "--as", "orders",
    )  # fmt: skip
    assert result.returncode == 3
    assert fields(result.stderr)["registry"] == str(missing)
    assert not missing.parent.exists()


def test_a_registry_option_after_call_wins_over_the_global_one(
    fleet: Fleet, registry: Path, tmp_path: Path
) -> None:
    """`call ... --registry X` overrides a --registry given before `call`."""
    missing = tmp_path / "missing.json"
    result = mscomm(
        environment(fleet, None), "--registry", str(missing), "call", "billing", "GET",
        "/echo", "--as", "orders", "--registry", str(registry),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["caller"] == "orders"
    assert not missing.exists()


def test_the_deadline_is_the_timeout_given(fleet: Fleet, registry: Path, app: Billing) -> None:
    """--timeout bounds the call: a handler that does not answer gives exit 3 and a
    deadline error that says the request may have run."""
    result = mscomm(
        environment(fleet, registry), "call", "billing", "GET", "/slow", "--as", "orders",
        "--timeout", "0.5",
    )  # fmt: skip
    app.release.set()
    assert result.returncode == 3
    found = fields(result.stderr)
    assert (found["error"], found["timeout"]) == ("DeadlineAfterSendingError", "0.5")
    assert found["delivery"] == "may have been delivered"


# -- usage errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--json", "{not json"], "is not JSON"),
        (["--data", "@/nonexistent/body.bin"], "cannot read the --data file"),
        (["-H", "no colon here"], "write 'Name: value'"),
        (["--timeout", "0"], "invalid timeout"),
        (["--json", "{}", "--data", "x"], "not allowed with argument"),
    ],
    ids=["bad-json", "missing-file", "bad-header", "zero-timeout", "two-bodies"],
)
def test_usage_errors_exit_2_before_any_call(
    fleet: Fleet, registry: Path, app: Billing, args: list[str], complaint: str
) -> None:
    """A malformed argument is a usage error (exit 2): nothing is sent."""
    env = environment(fleet, registry)
    result = mscomm(env, "call", "billing", "POST", "/charge", "--as", "orders", *args)
    assert result.returncode == 2
    assert complaint in result.stderr.decode()
    assert app.charges == 0


def test_no_caller_is_a_usage_error(fleet: Fleet, registry: Path) -> None:
    """Without --as and $SERVICE_NAME the command says how to name the caller, exit 2."""
    result = mscomm(environment(fleet, registry), "call", "billing", "GET", "/echo")
    assert result.returncode == 2
    assert "pass --as NAME or set SERVICE_NAME" in result.stderr.decode()
