"""A faithful stand-in for the QXT service, for tests, demos and notebooks.

It answers both endpoints exactly as the vendor's interface document says
(GET and POST, case-insensitive paths, every error code), deterministically
(the same number always gets the same answer), bills accounts into a
:class:`Ledger`, and injects latency and faults on request. Serve it:

- in-process: ``AsyncClient(key, transport=SimulatorTransport(sim))``
- over loopback HTTP in a thread: ``with serve(sim) as base_url: ...``
- in its own process: ``with spawn("--latency", "0.1") as base_url: ...``
  or ``python -m qxt_pandas.simulator --port 8080``

The server parts need the ``simulator`` extra (uvicorn). The library's own
code never imports this package.
"""

from ._answers import answer, validate
from ._app import Simulator
from ._serve import SimulatorTransport, serve, spawn
from ._shapes import SHAPES
from ._state import DEMO_APIKEY, DEMO_POSTPAID_APIKEY, POSTPAID, PREPAID, Account, Charge, Faults, Ledger

__all__ = [
    "DEMO_APIKEY",
    "DEMO_POSTPAID_APIKEY",
    "POSTPAID",
    "PREPAID",
    "SHAPES",
    "Account",
    "Charge",
    "Faults",
    "Ledger",
    "Simulator",
    "SimulatorTransport",
    "answer",
    "serve",
    "spawn",
    "validate",
]
