"""The package's layers: what may import what, no import cycles, every module importable alone.

The rule (``docs/layout.md``): the shared base and the envelope and replay
layers know nothing of HTTP clients or WSGI; the client and the middleware
build on them and never import each other; integrations sit at the edge.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from functools import cache
from pathlib import Path

import mscomm_sync

PACKAGE = Path(mscomm_sync.__file__).resolve().parent

#: Each module's layer, by the longest matching name prefix.
LAYERS = {
    "mscomm_sync._fast": "base",
    "mscomm_sync.buffers": "base",
    "mscomm_sync.errors": "base",
    "mscomm_sync.forking": "base",
    "mscomm_sync.telemetry": "telemetry",
    "mscomm_sync.keyring": "keys",
    "mscomm_sync.trust": "keys",
    "mscomm_sync.replay": "replay",
    "mscomm_sync.idempotency": "idempotency",
    "mscomm_sync.envelope": "envelope",
    "mscomm_sync.registry": "registry",
    "mscomm_sync.client": "client",
    "mscomm_sync.wsgi": "wsgi",
    "mscomm_sync.flask": "integration",
    "mscomm_sync.django": "integration",
    "mscomm_sync": "edge",  # the package's own __init__, cli, testing, demo
}
#: The layers each layer may import from (its own always included).
ALLOWED = {
    "base": {"base"},
    "telemetry": {"base"},
    "keys": {"base"},
    "replay": {"base", "telemetry"},
    "idempotency": {"base", "replay", "telemetry"},
    "envelope": {"base", "keys", "replay"},
    "registry": {"base", "keys", "telemetry"},
    "client": {"base", "telemetry", "keys", "replay", "envelope", "registry", "idempotency"},
    "wsgi": {"base", "telemetry", "keys", "replay", "envelope", "idempotency"},
    "integration": {"base", "keys", "wsgi"},
    "edge": set(LAYERS.values()),
}


def module_name(path: Path) -> str:
    """The dotted name of a module file of the package."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    """The layer a module belongs to."""
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[best]


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package modules a module imports, anywhere in it but ``if TYPE_CHECKING:``."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    skip: set[int] = set()
    for node in ast.walk(tree):
        if _type_checking_only(node):
            skip.update(id(child) for child in ast.walk(node))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("mscomm_sync"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            if not source.startswith("mscomm_sync"):
                continue
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                found.add(sub if sub in modules else source)
    return {m for m in found if m in modules and m != name}


@cache
def graph() -> dict[str, set[str]]:
    """Every package module and the package modules it imports."""
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) for p in paths}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_imports() -> None:
    """The graph finds known imports, relative and lazy ones included.

    So an empty result of the checks below means something."""
    edges = graph()
    assert "mscomm_sync.envelope.crypto" in edges["mscomm_sync.envelope.v1"]
    assert "mscomm_sync.client.adapter" in edges["mscomm_sync.client.session"]
    assert "mscomm_sync.registry" in edges["mscomm_sync.client.session"]  # imported at call time
    assert "mscomm_sync.telemetry.otel" in edges["mscomm_sync.telemetry.instruments"]  # lazy


def test_only_telemetry_otel_imports_opentelemetry() -> None:
    """OpenTelemetry is imported by one module, which only telemetry's instruments import
    (lazily, when it is asked for), so nothing else can load it by accident."""
    importers = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            if any(n == "opentelemetry" or n.startswith("opentelemetry.") for n in names):
                importers.append(module_name(path))
    assert sorted(set(importers)) == ["mscomm_sync.telemetry.otel"]
    assert [m for m, targets in graph().items() if "mscomm_sync.telemetry.otel" in targets] == [
        "mscomm_sync.telemetry.instruments"
    ]


def test_cycle_finder_finds_a_cycle() -> None:
    """The cycle finder reports a planted cycle (so an empty result means something)."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    """No module imports, directly or through others, a module that imports it back."""
    assert cycles(graph()) == []


def test_layers_import_only_what_they_may() -> None:
    """Each module imports only from its own layer and the layers below it."""
    wrong = [
        f"{module} ({layer_of(module)}) imports {target} ({layer_of(target)})"
        for module, targets in sorted(graph().items())
        for target in sorted(targets)
        if layer_of(target) not in ALLOWED[layer_of(module)] | {layer_of(module)}
    ]
    assert wrong == []


def test_client_and_wsgi_never_meet() -> None:
    """The calling side and the serving side share only the layers under them."""
    edges = graph()
    for module, targets in edges.items():
        if layer_of(module) in ("client", "wsgi"):
            other = "wsgi" if layer_of(module) == "client" else "client"
            assert not [t for t in targets if layer_of(t) == other], module


PROBE = textwrap.dedent(
    """
    import importlib, json, sys
    failures = {}
    for name in sys.argv[1:]:
        for loaded in [m for m in sys.modules if m.split(".")[0] == "mscomm_sync"]:
            del sys.modules[loaded]
        try:
            importlib.import_module(name)
        except Exception as exc:  # report every module, not just the first
            failures[name] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(failures))
    """
)


def test_every_module_imports_alone() -> None:
    """Each module imports first, with nothing of the package loaded before it."""
    names = sorted(n for n in graph() if not n.endswith("__main__"))
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *names],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(result.stdout) == {}
