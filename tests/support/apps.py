"""WSGI apps that tests serve from a separate server process (gunicorn).

Each is a factory, so importing this module does nothing; keys, the service
name and the replay store's file come from the environment the test sets.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable
from typing import Any, Callable

from mscomm_sync.wsgi import EncryptionMiddleware

#: When set, :func:`replay_app` records every delivery to this file.
DELIVERY_LOG_ENV = "MSCOMM_TEST_DELIVERY_LOG"


class DeliveryLog:
    """A WSGI wrapper, outside the middleware, that records who answered each request.

    Refused requests never reach the app, so the app cannot say which worker
    refused them; this wrapper sees every delivery. It appends one line per
    request, ``<pid> <status> <path>``, with a single ``O_APPEND`` write, so
    lines from concurrent worker processes do not interleave.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]], path: str) -> None:
        self.app = app
        self.path = path

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        statuses: list[str] = []

        def recording(status: str, headers: Any, exc_info: Any = None) -> Any:
            statuses.append(status[:3])
            return start_response(status, headers, exc_info)

        result = self.app(environ, recording)
        line = f"{os.getpid()} {statuses[-1] if statuses else '-'} {environ['PATH_INFO']}\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
        return result


def whoami(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Answer with this worker's process id and the verified caller."""
    body = json.dumps({"pid": os.getpid(), "caller": environ.get("mscomm.caller")}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def replay_app() -> Callable[..., Iterable[bytes]]:
    """The billing service with the default (host-wide, shared-memory) replay store.

    With ``$MSCOMM_TEST_DELIVERY_LOG`` set, it is wrapped in :class:`DeliveryLog`.
    """
    app = EncryptionMiddleware(whoami)
    path = os.environ.get(DELIVERY_LOG_ENV)
    return DeliveryLog(app, path) if path else app


_counts = {"echoed": 0, "fast": 0}


def echo(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Answer with the request body; ``/count`` answers the counts as JSON."""
    if environ["PATH_INFO"] == "/count":
        body = json.dumps(_counts).encode()
    else:
        _counts["echoed"] += 1
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [body]


def echo_app() -> Callable[..., Iterable[bytes]]:
    """The billing service echoing bodies, with ``/health`` and ``/count`` left plaintext.

    ``/count`` also says how many request bodies the gunicorn fast path
    (:func:`~mscomm_sync.wsgi.gunicorn.read_gunicorn_body`) read, counted
    by wrapping it in this worker.
    """
    from mscomm_sync.wsgi import body as wsgi_body

    names = vars(wsgi_body)  # the module's own globals: what read_request_body calls
    read = names["read_gunicorn_body"]
    if getattr(read, "counted", False):  # built twice in one process: count once
        return EncryptionMiddleware(echo, exempt_paths=("/health", "/count"))

    def counted(stream: Any, length: int) -> Any:
        body = read(stream, length)
        if body is not None:
            _counts["fast"] += 1
        return body

    counted.counted = True  # type: ignore[attr-defined]
    names["read_gunicorn_body"] = counted
    return EncryptionMiddleware(echo, exempt_paths=("/health", "/count"))


#: When set, :func:`notes_app`, :func:`charge_app`, :func:`ledger_app` and the
#: Django project's notes views append ``<PATH_INFO> <caller>`` to this file for
#: every request their views run (:func:`readme_billing`: ``<path> <order> <pid>``).
RUN_LOG_ENV = "MSCOMM_TEST_RUN_LOG"


def record_run(path: str, caller: object) -> None:
    """Append one run to the run log, in a single O_APPEND write."""
    target = os.environ.get(RUN_LOG_ENV)
    if target:
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{path} {caller}\n".encode())
        finally:
            os.close(fd)


def notes_app() -> Any:
    """A Flask billing service with /admin/wipe, /notes/admin/wipe, / and an exempt /health/."""
    from flask import Flask, jsonify, request

    from mscomm_sync.flask import current_caller, init_app

    app = Flask("notes")

    def ran() -> Any:
        record_run(request.path, current_caller())
        return jsonify(ran=request.path, caller=current_caller())

    app.add_url_rule("/admin/wipe", "wipe", ran, methods=["POST"])
    app.add_url_rule("/notes/admin/wipe", "notes_wipe", ran, methods=["POST"])
    app.add_url_rule("/", "root", ran, methods=["GET"])
    app.add_url_rule("/health/", "health", lambda: "ok", methods=["GET"])
    init_app(app, service_name="billing", exempt_paths=["/health/"])
    return app


#: Seconds :func:`charge_app`'s and :func:`ledger_app`'s handlers hold each charge
#: (default 0.3).
HOLD_ENV = "MSCOMM_TEST_HOLD"
#: When set, the seconds those handlers hold the first run in the run log instead,
#: e.g. long enough for a test to kill the worker holding it.
HOLD_FIRST_ENV = "MSCOMM_TEST_HOLD_FIRST"


def hold() -> None:
    """Hold a charge after its run was recorded: :data:`HOLD_FIRST_ENV` for the first."""
    import time

    seconds = os.environ.get(HOLD_ENV, "0.3")
    first = os.environ.get(HOLD_FIRST_ENV)
    if first is not None:
        with open(os.environ[RUN_LOG_ENV], "rb") as runs:
            if runs.read().count(b"\n") == 1:
                seconds = first
    time.sleep(float(seconds))


def charge(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Charge once: record the run, hold a moment, answer with this worker's pid."""
    if environ["PATH_INFO"] == "/health":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    record_run(environ["PATH_INFO"], environ.get("mscomm.caller"))
    hold()
    answer = {"pid": os.getpid(), "charged": json.loads(body or b"{}")}
    start_response("201 Created", [("Content-Type", "application/json")])
    return [json.dumps(answer).encode()]


def charge_app() -> Callable[..., Iterable[bytes]]:
    """billing's /charge, honouring idempotency keys with the host-wide default store."""
    return EncryptionMiddleware(charge, exempt_paths=("/health",), idempotency=True)


#: The SQLite file of :func:`ledger_app`'s charges.
LEDGER_ENV = "MSCOMM_TEST_LEDGER"


def ledger_app() -> Any:
    """billing whose charge and its key commit in one transaction (docs/idempotency.md).

    The recipe for the window no idempotency store closes: ``(caller, key)`` is
    the ledger's primary key, inserted with the charge, so a run that repeats
    one a crash cut off after its commit inserts nothing and answers with the
    charge the first run made (``charged`` and the ``pid`` that charged); a
    repeat with another amount gets 422. It takes the key only from a v2
    request, where it is sealed. Like :func:`charge`, each run is recorded in
    the run log, after the commit, and then held (:func:`hold`).
    """
    import sqlite3

    from flask import Flask, abort, jsonify, request

    from mscomm_sync.flask import current_caller, init_app

    path = os.environ[LEDGER_ENV]
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute(
            "CREATE TABLE IF NOT EXISTS charges (caller TEXT NOT NULL, key TEXT NOT NULL,"
            " amount INTEGER NOT NULL, pid INTEGER NOT NULL, PRIMARY KEY (caller, key))"
        )
    app = Flask("ledger")

    @app.post("/charge")
    def charge() -> Any:
        caller, key = current_caller(), request.headers.get("Idempotency-Key")
        if caller is None or key is None or request.environ.get("mscomm.protocol") != "2":
            abort(400)  # only a sealed key from a verified caller names a charge
        amount = int(request.get_json()["amount"])
        with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:
            with db:  # one transaction: the charge and its key commit together, or neither
                db.execute(
                    "INSERT INTO charges VALUES (?, ?, ?, ?) ON CONFLICT (caller, key) DO NOTHING",
                    (caller, key, amount, os.getpid()),
                )
            charged, pid = db.execute(
                "SELECT amount, pid FROM charges WHERE caller = ? AND key = ?", (caller, key)
            ).fetchone()
        if charged != amount:
            abort(422)  # the key named another charge
        record_run(request.path, caller)
        hold()
        return jsonify(charged=charged, pid=pid), 201

    app.add_url_rule("/health", "health", lambda: "ok")
    init_app(app, service_name="billing", exempt_paths=["/health"], idempotency=True)
    return app


def readme_billing() -> Any:
    """The README's billing service (``examples/flask_service.py``), recording each charge.

    Each run of its charge view appends ``<path> <order> <pid>`` to the run
    log (:data:`RUN_LOG_ENV`), ``<pid>`` being the gunicorn worker that ran it;
    a repeat the middleware answers from its idempotency store never reaches
    the view, so it is not recorded.
    """
    import sys
    from pathlib import Path

    examples = str(Path(__file__).resolve().parents[2] / "examples")
    if examples not in sys.path:
        sys.path.insert(0, examples)
    import flask_service
    from flask import request

    @flask_service.app.before_request
    def record() -> None:
        if request.path != "/health":
            order = (request.get_json(silent=True) or {}).get("order")
            record_run(request.path, f"{order} {os.getpid()}")

    return flask_service.app
