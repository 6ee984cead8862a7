"""qxt-pandas: check Chinese mobile numbers against the QXT phone-status service.

Example::

    import qxt_pandas
    with qxt_pandas.Client() as client:        # key from QXT_APIKEY
        client.status("13972565391").status   # '正常'
"""

from .client import AsyncClient, Client
from .errors import (
    VENDOR_CODES,
    ConfigurationError,
    ConnectionFailedError,
    HttpStatusError,
    InsufficientBalanceError,
    InvalidApiKeyError,
    InvalidMobileError,
    InvalidRequestError,
    IpNotAllowedError,
    MissingApiKeyError,
    MobileLengthError,
    NoInformationError,
    NumberError,
    QxtError,
    ServerBusyError,
    TerminalError,
    TransientError,
    UnexpectedResponseError,
    UnknownCodeError,
    UnparsableResponseError,
    error_for_code,
)
from .protocol import Balance, PhoneStatus

__version__ = "0.1.0"

__all__ = [
    "VENDOR_CODES",
    "AsyncClient",
    "Balance",
    "Client",
    "ConfigurationError",
    "ConnectionFailedError",
    "HttpStatusError",
    "InsufficientBalanceError",
    "InvalidApiKeyError",
    "InvalidMobileError",
    "InvalidRequestError",
    "IpNotAllowedError",
    "MissingApiKeyError",
    "MobileLengthError",
    "NoInformationError",
    "NumberError",
    "PhoneStatus",
    "QxtError",
    "ServerBusyError",
    "TerminalError",
    "TransientError",
    "UnexpectedResponseError",
    "UnknownCodeError",
    "UnparsableResponseError",
    "__version__",
    "error_for_code",
]
