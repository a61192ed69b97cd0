"""waitress: hand it a large sealed body in its own file wrapper, so it is not copied.

waitress copies every chunk an app returns into its output buffer, and
spills one past ``outbuf_overflow`` (1 MiB by default) to a temporary file;
a body in its ``wsgi.file_wrapper`` is sent from memory as it is. The gate
is waitress's module name: other servers' wrappers are not used, because
some mishandle an in-memory file (uWSGI before 2.0.19).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from typing import Any, cast

__all__ = ["served_body"]


#: A body from this size up goes to waitress in its own ``wsgi.file_wrapper``.
_WRAP_MIN_BYTES = 64 * 1024
#: Where waitress's ``wsgi.file_wrapper`` (``ReadOnlyFileBasedBuffer``) lives.
_WAITRESS_WRAPPER_MODULE = "waitress.buffers"


def served_body(environ: Mapping[str, Any], chunks: list[bytes]) -> Iterable[bytes]:
    """Return the iterable that hands ``chunks`` (the sealed body) to the server.

    Under waitress, a large body goes in its wrapper, over an in-memory file
    that shares the bytes (iterating it yields them in one chunk, uncopied).
    Anything else gets the list: other servers send its chunk as it is.
    """
    if (len(chunks[0]) if len(chunks) == 1 else sum(map(len, chunks))) >= _WRAP_MIN_BYTES:
        wrapper: Any = environ.get("wsgi.file_wrapper")
        if getattr(wrapper, "__module__", None) == _WAITRESS_WRAPPER_MODULE:
            # One file for waitress: a v2 body's two chunks are joined (one
            # copy, where waitress would copy the large one and spill it).
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            wrapped = wrapper(io.BytesIO(body), len(body))
            # Sized now (waitress does it again), so len() and bool() of it are
            # right for any middleware outside this one.
            wrapped.prepare(len(body))
            return cast("Iterable[bytes]", wrapped)
    return chunks
