"""Three ways to serve a :class:`Simulator`: in-process, loopback thread, subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import httpx

from ._app import ConnectionDropped, Simulator

if TYPE_CHECKING:
    import uvicorn


class SimulatorTransport(httpx.AsyncBaseTransport):
    """In-process transport: requests go straight to the app, no sockets.

    Faults look as they would on a socket: a dropped connection becomes
    ``httpx.RemoteProtocolError`` and a hang ends in ``httpx.ReadTimeout``
    after the request's read timeout.
    """

    def __init__(self, simulator: Simulator, client_ip: str = "127.0.0.1") -> None:
        self._asgi = httpx.ASGITransport(simulator, client=(client_ip, 50000))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        read_timeout = request.extensions.get("timeout", {}).get("read")
        try:
            return await asyncio.wait_for(self._asgi.handle_async_request(request), read_timeout)
        except ConnectionDropped:
            raise httpx.RemoteProtocolError("server dropped the connection mid-response", request=request) from None
        except TimeoutError:
            raise httpx.ReadTimeout("timed out waiting for the simulator", request=request) from None


class _DropExpected(logging.Filter):
    """Keep uvicorn from logging the simulator's deliberate connection drops as crashes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], ConnectionDropped))


def _server(simulator: Simulator, log_level: str) -> uvicorn.Server:
    import uvicorn  # the simulator extra; imported here so the library never needs it

    logging.getLogger("uvicorn.error").addFilter(_DropExpected())
    # log_config=None: uvicorn's own logging setup writes to stdout, and fails ("Unable to configure formatter")
    # when a scheduler closed it; its warnings still reach stderr through logging's last resort.
    config = uvicorn.Config(
        simulator, log_level=log_level, lifespan="off", timeout_graceful_shutdown=1, access_log=False, log_config=None
    )
    return uvicorn.Server(config)


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


@contextlib.contextmanager
def serve(
    simulator: Simulator | None = None, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
) -> Iterator[str]:
    """Serve ``simulator`` over real HTTP on loopback in a background thread; yields the base URL.

    Example::

        with serve(Simulator(latency=0.1)) as url:
            Client(DEMO_APIKEY, base_url=url).balance()
    """
    simulator = simulator or Simulator()
    sock = _bind(host, port)
    server = _server(simulator, log_level)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="qxt-simulator", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the simulator did not start within 10 s")
        time.sleep(0.005)
    bound_port = sock.getsockname()[1]
    try:
        yield f"http://{host if ':' not in host else f'[{host}]'}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def run_forever(simulator: Simulator, host: str, port: int, announce: Callable[[str], object]) -> None:
    """Serve in the foreground until interrupted (the ``python -m`` command)."""
    sock = _bind(host, port)
    server = _server(simulator, "warning")
    announce(f"http://{host}:{sock.getsockname()[1]}")
    server.run(sockets=[sock])


@contextlib.contextmanager
def spawn(*args: str, timeout: float = 20) -> Iterator[str]:
    """Run the simulator command in its own process (its own GIL); yields the base URL.

    ``args`` are the command's options, e.g. ``spawn("--latency", "0.1")``.
    Benchmarks use this so that the server does not compete with the client.
    """
    cmd = [sys.executable, "-m", "qxt_pandas.simulator", "--port", "0", *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = _read_line(proc, timeout)
        url = line.split()[-1]
        if not url.startswith("http://"):
            raise RuntimeError(f"the simulator command printed {line!r}, not its URL")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    result: list[str] = []
    stdout = proc.stdout
    assert stdout is not None  # spawned with stdout=PIPE
    reader = threading.Thread(target=lambda: result.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not result or not result[0]:
        raise RuntimeError(f"the simulator command did not announce its URL within {timeout} s")
    return result[0].strip()
