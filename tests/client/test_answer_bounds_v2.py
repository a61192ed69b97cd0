"""max_answer_size holds a v2 answer's plaintext to the limit, as it does v1's.

A v2 answer carries two tags and its sealed header fields besides its body, so
its sealed length is not its plaintext's plus 16: the limit must be applied to
what it stands for, not refuse an answer within it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from support.fleet import Fleet

from mscomm_sync import CallPolicy, FileRegistry, MicroServiceClient, ResponseTooLargeError
from mscomm_sync.replay import MemoryReplayStore
from mscomm_sync.testing import LiveServer
from mscomm_sync.wsgi import EncryptionMiddleware

LIMIT = 1000


def sized(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Answer ``/<n>`` with n bytes and a few headers of its own (sealed in v2)."""
    size = int(environ["PATH_INFO"].strip("/"))
    headers = [("Content-Type", "application/octet-stream")]
    headers += [(f"X-Answer-{i}", "v" * 40) for i in range(10)]
    start_response("200 OK", headers)
    return [b"x" * size]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[MicroServiceClient]:
    fleet = Fleet("orders", "billing")
    app = EncryptionMiddleware(
        sized, "billing", identity=fleet.identity("billing"), trust=fleet.trust("orders"),
        allowed_callers=["orders"], replay_store=MemoryReplayStore(),
    )  # fmt: skip
    with LiveServer(app) as live:
        registry = FileRegistry(tmp_path / "r.json")
        registry.register("billing", live.url)
        policy = attrs.evolve(CallPolicy(), max_answer_size=LIMIT)
        with MicroServiceClient(
            "orders", registry=registry, identity=fleet.identity("orders"),
            trust=fleet.trust("billing"), policy=policy,
        ) as orders:  # fmt: skip
            yield orders
        registry.close()


@pytest.mark.parametrize("size", [0, LIMIT - 1, LIMIT])
def test_a_v2_answer_within_the_limit_is_read(client: MicroServiceClient, size: int) -> None:
    resp = client.request(target_service="billing", endpoint=f"/{size}")
    assert resp.content == b"x" * size
    assert resp.headers["X-Answer-9"] == "v" * 40


@pytest.mark.parametrize("size", [LIMIT + 1, 64 * 1024, 200 * 1024])
def test_a_v2_answer_over_the_limit_is_refused(client: MicroServiceClient, size: int) -> None:
    with pytest.raises(ResponseTooLargeError) as info:
        client.request(target_service="billing", endpoint=f"/{size}")
    assert (info.value.service, info.value.limit) == ("billing", LIMIT)
