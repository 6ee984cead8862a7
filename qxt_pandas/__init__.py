"""qxt-pandas: check Chinese mobile numbers against the QXT phone-status service.

Example::

    import qxt_pandas
    with qxt_pandas.Client() as client:        # key from QXT_APIKEY
        client.status("13972565391").status   # '正常'
"""

from . import accessor as _accessor  # noqa: F401 (registers df.qxt and s.qxt)
from . import errors as _errors
from .errors import *  # noqa: F403 (the exception tree; its names are errors.__all__)
from .numbers import normalize_mobiles
from .options import CheckOptions
from .pipeline import Plan
from .reports.report import Report, report
from .service.client import AsyncClient, Client
from .service.protocol import Balance, PhoneStatus
from .stores.copy import Copied, copy_answers
from .stores.forget import Forgotten, forget

__version__ = "0.1.0"

import sys as _sys

if "dask.dataframe" in _sys.modules:  # Dask already loaded: register ddf.qxt too (else: import qxt_pandas.dask)
    from . import dask as _dask  # noqa: F401
if "polars" in _sys.modules:  # Polars already loaded: register its df.qxt too (else: import qxt_pandas.polars)
    from . import polars as _polars  # noqa: F401

__all__ = [
    "AsyncClient",
    "Client",
    "PhoneStatus",
    "Balance",
    "normalize_mobiles",
    "CheckOptions",
    "Plan",
    "Report",
    "report",
    "forget",
    "Forgotten",
    "copy_answers",
    "Copied",
    *_errors.__all__,
    "__version__",
]
