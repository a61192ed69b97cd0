"""Telemetry settings: validated when built, read from the environment, the process's default."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mscomm_sync import (
    ConfigurationError,
    MicroServiceClient,
    Telemetry,
    initialize_telemetry,
    reset_telemetry,
)
from mscomm_sync.keyring import Keyring, generate_key
from mscomm_sync.telemetry.options import resolve
from mscomm_sync.telemetry.process import process_instruments

from .services import Sdk

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("field", ["otel", "access_log"])
def test_flags_must_be_booleans(field: str) -> None:
    """otel and access_log take True or False only, and the error names the field."""
    with pytest.raises(ConfigurationError) as raised:
        Telemetry(**{field: 1})
    assert raised.value.variable == field


def test_providers_must_be_providers() -> None:
    """A tracer provider without get_tracer (or meter provider without get_meter) is refused."""
    with pytest.raises(ConfigurationError):
        Telemetry(tracer_provider=object())
    with pytest.raises(ConfigurationError):
        Telemetry(meter_provider="meter")


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, (False, False)),
        ({"MSCOMM_TELEMETRY": "otel"}, (True, False)),
        ({"MSCOMM_TELEMETRY": "off", "MSCOMM_ACCESS_LOG": "1"}, (False, True)),
        ({"MSCOMM_TELEMETRY": "TRUE", "MSCOMM_ACCESS_LOG": "false"}, (True, False)),
    ],
)
def test_the_environment_gives_the_defaults(
    environ: dict[str, str], expected: tuple[bool, bool]
) -> None:
    """$MSCOMM_TELEMETRY and $MSCOMM_ACCESS_LOG turn OpenTelemetry and the access logs on."""
    found = Telemetry.from_env(environ)
    assert (found.otel, found.access_log) == expected


def test_a_bad_variable_fails_when_a_client_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """A value that is neither on nor off is refused at construction, naming the variable."""
    monkeypatch.setenv("MSCOMM_TELEMETRY", "maybe")
    with pytest.raises(ConfigurationError) as raised:
        MicroServiceClient("orders", keyring=Keyring.from_mapping({"orders": generate_key()}))
    assert raised.value.variable == "MSCOMM_TELEMETRY"


def test_the_option_accepts_settings_booleans_and_none() -> None:
    """True is OpenTelemetry on, False nothing, None the process's default; anything else
    is a ConfigurationError."""
    assert resolve(True) == Telemetry()
    assert resolve(False) == Telemetry.off() and not Telemetry.off().active
    assert resolve(None) is None
    with pytest.raises(ConfigurationError):
        resolve("otel")  # type: ignore[arg-type]


def test_the_process_default_is_set_read_and_reset(sdk: Sdk) -> None:
    """initialize_telemetry() sets what everything without telemetry= uses, until reset."""
    assert process_instruments().otel is None
    chosen = initialize_telemetry(sdk.telemetry(access_log=True))
    assert process_instruments().config is chosen and process_instruments().otel is not None
    reset_telemetry()
    assert process_instruments().otel is None


def test_settings_pickle_without_their_providers(sdk: Sdk) -> None:
    """A pickled Telemetry keeps its switches and drops its providers (the global ones are
    used after): a client with telemetry pickles."""
    copy = pickle.loads(pickle.dumps(sdk.telemetry(access_log=True)))  # noqa: S301
    assert copy == Telemetry(access_log=True)
    client = MicroServiceClient("orders", telemetry=sdk.telemetry())
    copy_of_client = pickle.loads(pickle.dumps(client))  # noqa: S301
    assert copy_of_client._telemetry == Telemetry()


def test_otel_without_the_api_installed_is_a_configuration_error(tmp_path: Path) -> None:
    """In a process where the OpenTelemetry API is missing (an empty ``opentelemetry``
    package shadows the real one), asking for it is a ConfigurationError that says what to
    install, and telemetry off still works."""
    (tmp_path / "opentelemetry").mkdir()
    (tmp_path / "opentelemetry" / "__init__.py").write_text("")
    code = textwrap.dedent(
        """
        from mscomm_sync import Telemetry
        from mscomm_sync.errors import ConfigurationError
        Telemetry(otel=False)
        try:
            Telemetry()
        except ConfigurationError as exc:
            print(exc.variable, "|", exc.reason, "|", exc)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "telemetry | opentelemetry-api is not installed | telemetry needs the OpenTelemetry"
        " API: pip install mscomm_sync[otel]"
    )
