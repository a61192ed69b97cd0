"""v2 services for the telemetry tests: each an EncryptionMiddleware on a real waitress
server on 127.0.0.1, registered in a real file registry; and the OpenTelemetry SDK read
in memory."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Callable, Optional

from client.servers import WaitressServer
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support.fleet import Fleet

from mscomm_sync import FileRegistry, MicroServiceClient, Telemetry
from mscomm_sync.keyring import Keyring
from mscomm_sync.replay import MemoryReplayStore
from mscomm_sync.wsgi import EncryptionMiddleware

App = Callable[..., Iterable[bytes]]


class Sdk:
    """The real SDK's providers, with an in-memory span exporter and metric reader."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def telemetry(self, **options: Any) -> Telemetry:
        return Telemetry(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, **options
        )

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def points(self, name: str) -> list[Any]:
        """Every data point of the metric ``name`` (empty if it was never recorded)."""
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


class Services:
    """Services named ``names``, each holding its own v2 key and every other's public key.

    Every service accepts every other as a caller. ``serve(name, app)`` starts one.
    """

    def __init__(self, registry: Path, names: Iterable[str], **telemetry: Any) -> None:
        self.names = tuple(names)
        self.fleet = Fleet(*self.names)
        self.registry = FileRegistry(registry)
        self._servers: list[WaitressServer] = []
        self._clients: list[MicroServiceClient] = []

    def middleware(self, name: str, app: App, **options: Any) -> EncryptionMiddleware:
        others = [n for n in self.names if n != name]
        options.setdefault("allowed_callers", others)
        return EncryptionMiddleware(
            app,
            name,
            identity=self.fleet.identity(name),
            trust=self.fleet.trust(*others),
            keyring=Keyring.from_mapping({}),
            versions=("2",),
            replay_store=MemoryReplayStore(),
            **options,
        )

    def serve(self, name: str, app: App, *, register: bool = True, **options: Any) -> str:
        """Start ``name``'s app behind its middleware; return its URL."""
        server = WaitressServer(self.middleware(name, app, **options)).__enter__()
        self._servers.append(server)
        if register:
            self.registry.register(name, server.url)
        return server.url

    def client(self, name: str, **options: Any) -> MicroServiceClient:
        """``name``'s client, which knows every other service's public key."""
        others = [n for n in self.names if n != name]
        options.setdefault("registry", self.registry)
        client = MicroServiceClient(
            name,
            identity=self.fleet.identity(name),
            trust=self.fleet.trust(*others),
            keyring=Keyring.from_mapping({}),
            **options,
        )
        self._clients.append(client)
        return client

    def close(self) -> None:
        for client in self._clients:
            client.close()
        for server in reversed(self._servers):
            server.__exit__(None, None, None)
        self.registry.close()


def by_name(spans: Iterable[ReadableSpan]) -> dict[str, list[ReadableSpan]]:
    found: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        found.setdefault(span.name, []).append(span)
    return found


def parent_id(span: ReadableSpan) -> Optional[int]:
    return span.parent.span_id if span.parent is not None else None


def attributes(point_or_span: Any) -> Mapping[str, Any]:
    return dict(point_or_span.attributes or {})
