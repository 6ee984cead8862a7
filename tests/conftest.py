"""Shared fixtures: a simulator with known accounts, served in-process or on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

import qxt_pandas
from qxt_pandas.simulator import POSTPAID, PREPAID, Account, Simulator, SimulatorTransport, serve

# HYPOTHESIS_PROFILE=thorough runs the property tests with 25x the examples.
settings.register_profile("default", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=5000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

#: A distinctive key: any test that finds this string in output has found a leak.
SECRET = "SeCrEt-QXT-key-4242-never-shown!"
#: The command as a child process runs it (what the ``qxt`` script runs, without the entry point's shim).
QXT = [sys.executable, "-m", "qxt_pandas.cli"]
POSTPAID_KEY = "postpaid-key-000000000000000000P"
EMPTY_KEY = "empty-prepaid-key-00000000000000"
FENCED_KEY = "ip-fenced-key-000000000000000000"

assert all(len(k) == 32 for k in (SECRET, POSTPAID_KEY, EMPTY_KEY, FENCED_KEY))

GOOD = "13972565391"  # 正常 in the simulator (see test_simulator for how that is known)
SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "crm_export.csv"


def qxt(*args: object, key: str | None = SECRET, timeout: float = 120, env_extra: dict[str, str] | None = None,
        **popen) -> subprocess.CompletedProcess:  # fmt: skip
    """The qxt command in a subprocess, the key in its environment; asserts no key shows in its output."""
    env = {k: v for k, v in os.environ.items() if k not in ("QXT_APIKEY", "QXT_BASE_URL")} | (env_extra or {})
    if key is not None:
        env["QXT_APIKEY"] = key
    result = subprocess.run([*QXT, *map(str, args)], env=env,
                            capture_output=True, text=True, timeout=timeout, **popen)  # fmt: skip
    for key_like in (SECRET, FENCED_KEY):
        assert key_like not in result.stdout + result.stderr  # the key is in no output, ever
    return result


def wait_for(condition: Callable[[], object], timeout: float = 30.0) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` passes (tests never sleep a fixed time)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def make_simulator(**knobs) -> Simulator:
    return Simulator(
        [
            Account(SECRET, PREPAID, balance=1000),
            Account(POSTPAID_KEY, POSTPAID, balance=0),
            Account(EMPTY_KEY, PREPAID, balance=0),
            Account(FENCED_KEY, PREPAID, balance=1000, allowed_ips=frozenset({"203.0.113.7"})),
        ],
        **knobs,
    )


def rich(**knobs) -> Simulator:
    """A simulator whose main account can pay for anything a test asks (its ledger still counts every charge)."""
    sim = make_simulator(**knobs)
    sim.accounts[SECRET].balance = 1_000_000
    return sim


def stored(store: str | Path) -> set[str]:
    """The numbers a store holds an answer for (opening it moves in what was spilled for it)."""
    from qxt_pandas.stores import open_store

    opened = open_store(store, service="127.0.0.1")
    try:
        return set(opened.answers()["mobile"].to_pylist())
    finally:
        opened.close()


@pytest.fixture
def sim() -> Simulator:
    return make_simulator()


@pytest.fixture
def service() -> Iterator[tuple[Simulator, str]]:
    """A simulator with balance for the whole sample (~2,000 numbers), served on loopback: (sim, url)."""
    sim = make_simulator()
    sim.accounts[SECRET].balance = 100_000
    with serve(sim) as url:
        yield sim, url


@pytest.fixture
def loopback(sim: Simulator) -> Iterator[str]:
    with serve(sim) as url:
        yield url


class SyncFace:
    """Drives either client kind through one interface, so each test runs against both."""

    def __init__(self, kind: str, **options) -> None:
        self.kind = kind
        if kind == "sync":
            self._client = qxt_pandas.Client(**options)
        else:
            self._loop = asyncio.new_event_loop()
            self._client = qxt_pandas.AsyncClient(**options)

    def _do(self, name: str, *args):
        call = getattr(self._client, name)
        if self.kind == "sync":
            return call(*args)
        return self._loop.run_until_complete(call(*args))

    def status(self, mobile: str) -> qxt_pandas.PhoneStatus:
        return self._do("status", mobile)

    def balance(self) -> qxt_pandas.Balance:
        return self._do("balance")

    def close(self) -> None:
        if self.kind == "sync":
            self._client.close()
        else:
            self._loop.run_until_complete(self._client.aclose())
            self._loop.close()


@pytest.fixture(params=["inprocess-sync", "inprocess-async", "loopback-sync", "loopback-async"])
def connect(request, sim: Simulator) -> Iterator[Callable[..., SyncFace]]:
    """``connect(apikey=..., **options)`` -> a client on the chosen serving path and API."""
    where, kind = request.param.split("-")
    made: list[SyncFace] = []
    with contextlib.ExitStack() as stack:
        if where == "loopback":
            url = stack.enter_context(serve(sim))
            base = {"base_url": url}
        else:
            base = {"base_url": "http://simulator.invalid", "transport": SimulatorTransport(sim)}

        def factory(apikey: str = SECRET, **options) -> SyncFace:
            face = SyncFace(kind, apikey=apikey, **{"backoff": 0, **base, **options})
            made.append(face)
            return face

        factory.where = where  # type: ignore[attr-defined]
        yield factory
        for face in made:
            face.close()


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[Path]:
    """``directory`` made unwritable, even for root (the immutable flag); skips the test where neither works."""
    immutable = (
        os.geteuid() == 0 and subprocess.run(["chattr", "+i", str(directory)], capture_output=True).returncode == 0
    )
    if not immutable:
        os.chmod(directory, 0o555)
    try:
        probe = directory / ".probe"
        try:
            probe.write_text("x")
        except OSError:
            yield directory
            return
        probe.unlink()
        pytest.skip("cannot make a directory read-only here (root without chattr)")
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(directory)], check=True)
        os.chmod(directory, 0o755)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """One real PostgreSQL for the whole run (pgserver: a server in a wheel, on a Unix socket): its base URI."""
    import tempfile
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset
        import pgserver

        server = pgserver.get_server(tempfile.mkdtemp(prefix="qxt-pg-"), cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.fixture
def postgres(postgres_server: str, request) -> str:
    """A store URI with a schema of its own for this test."""
    import re
    import uuid

    name = re.sub(r"\W", "_", request.node.name)[:40].lower()
    return f"{postgres_server}&schema=t_{name}_{uuid.uuid4().hex[:6]}"


@pytest.fixture(params=["directory", "postgres"])
def store(request, tmp_path) -> str:
    """Each store kind in turn: a checkpoint directory, or a PostgreSQL URI (the same tests prove both)."""
    if request.param == "directory":
        return str(tmp_path / "c.qxt")
    return request.getfixturevalue("postgres")
