"""Run an ASGI app under a real uvicorn server in a background thread, for tests.

``with run_app(app) as base_url:`` gives ``http://127.0.0.1:<free port>`` once the server
accepts connections, and stops it (lifespan shutdown included) on exit. The socket is
bound here, before the thread starts, so there is no race for a "free" port.
"""

from __future__ import annotations

import socket
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


@contextmanager
def run_app(app: Any, host: str = "127.0.0.1", port: int = 0, **options: Any) -> Iterator[str]:
    """Serve ``app`` on ``host`` and ``port`` (0: a free one); yield its base URL.
    ``options`` go to uvicorn.Config (e.g. ``http=`` a protocol class)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", lifespan="auto", **options
    )
    server = uvicorn.Server(config)
    # uvicorn installs signal handlers only in the main thread, so a thread is safe here.
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{port}", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("uvicorn exited during startup (see its log)")
            if time.monotonic() > deadline:
                raise TimeoutError(f"uvicorn did not start within {START_TIMEOUT} s")
            time.sleep(0.005)
        netloc = f"[{host}]" if ":" in host else host
        yield f"http://{netloc}:{port}"
    finally:
        server.should_exit = True
        thread.join(STOP_TIMEOUT)
        sock.close()
        if thread.is_alive():
            # A warning, not an exception: never hide the error that ended the with-block.
            warnings.warn(
                f"uvicorn on port {port} still running after {STOP_TIMEOUT} s", stacklevel=3
            )
