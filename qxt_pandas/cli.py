"""The ``qxt`` command: ETL over exports of any size, thin over the library."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from . import __version__
from ._sync import run_sync
from .errors import (
    ConfigurationError,
    InsufficientBalanceError,
    InvalidApiKeyError,
    IpNotAllowedError,
    MissingApiKeyError,
    QxtError,
)
from .files import AtomicWriter, open_source
from .pipeline import CheckOptions, parse_age, read_balance
from .stream import acheck_file, aplan_file

__all__ = ["EXIT_CODES", "main"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_KEY, EXIT_BALANCE, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_FAILURE: "other failure (network, service, disk)",
    EXIT_USAGE: "usage error: arguments, input file, column, checkpoint",
    EXIT_KEY: "no key, bad key, or this machine's IP is not on the account's allow-list",
    EXIT_BALANCE: "balance exhausted or too low for the run (answers so far are in the checkpoint)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C, SIGTERM): run the same command again to resume",
}
EPILOG = (
    "exit codes:\n"
    + "\n".join(f"  {code:<4} {what}" for code, what in EXIT_CODES.items())
    + "\n\nThe API key comes from $QXT_APIKEY or --apikey-file, never from a flag (shell history, ps)."
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qxt",
        description="Check Chinese mobile numbers against the QXT phone-status service.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"qxt-pandas {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{check,balance,simulate}")

    def service_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--base-url", help="service URL (default $QXT_BASE_URL, then the vendor)")
        p.add_argument("--apikey-file", type=Path, help="read the API key from this file (default $QXT_APIKEY)")
        p.add_argument("--simulate", action="store_true", help="run against the bundled simulator on loopback")
        p.add_argument("--timeout", type=float, default=10.0, help="seconds per attempt (default 10)")
        p.add_argument("--retries", type=int, default=3, help="retries of transient faults (default 3)")

    check = commands.add_parser(
        "check", help="check a column of an export and write it with the results",
        description="Check the numbers in one column of INPUT (CSV/TSV, Parquet, .xlsx) and write every row "
        "with the result columns to OUTPUT (.parquet, .csv, .tsv). Each distinct number is paid for once; "
        "with --checkpoint, a second run pays only for what is new.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    check.add_argument("input", type=Path)
    check.add_argument("--column", required=True, help="the column holding the mobile numbers")
    check.add_argument("--output", type=Path, help="the output file (.parquet, .csv, .tsv); not needed for --dry-run")
    check.add_argument("--checkpoint", type=Path, help="checkpoint directory: resume, never pay twice")
    check.add_argument("--concurrency", type=int, default=64, help="requests in flight (default 64)")
    check.add_argument("--rate", type=float, help="most requests started per second")
    check.add_argument("--budget", type=int, help="most paid queries this run")
    check.add_argument("--max-age", help="ask again for stored answers older than this, e.g. 90d, 12h")
    check.add_argument("--encoding", help="input encoding (default: detected; utf-8, utf-8-sig, gbk, gb18030)")
    check.add_argument("--excel-friendly", action="store_true", help="CSV output with a UTF-8 BOM, for Excel")
    check.add_argument("--dry-run", action="store_true", help="print the plan and spend nothing")
    check.add_argument("--progress", choices=["auto", "bar", "log", "off"], default="auto",
                       help="a bar when stderr is a terminal, plain log lines when not (default auto)")  # fmt: skip
    service_options(check)

    balance = commands.add_parser("balance", help="print the account's fee type and balance")
    service_options(balance)

    simulate = commands.add_parser("simulate", help="serve the bundled simulator on loopback until Ctrl-C")
    simulate.add_argument("--port", type=int, default=8080)
    simulate.add_argument("--latency", type=float, default=0.1)
    simulate.add_argument("--jitter", type=float, default=0.0)
    simulate.add_argument("--faults", type=float, default=0.0)
    simulate.add_argument("--balance", type=int, default=1_000_000)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns its exit code (see ``qxt --help``)."""
    args = _parser().parse_args(argv)
    if args.command == "simulate":
        from .simulator.__main__ import main as simulate

        return simulate(["--port", str(args.port), "--latency", str(args.latency), "--jitter", str(args.jitter),
                         "--faults", str(args.faults), "--balance", str(args.balance)])  # fmt: skip
    previous = signal.signal(signal.SIGTERM, _interrupt)  # an ETL scheduler's stop: as Ctrl-C
    try:
        return _run(args)
    except KeyboardInterrupt:
        where = f" Answers so far are saved in {args.checkpoint}." if getattr(args, "checkpoint", None) else ""
        _say(f"interrupted; no output was written.{where} Run the same command again to resume.")
        return EXIT_INTERRUPTED
    except (MissingApiKeyError, InvalidApiKeyError, IpNotAllowedError) as exc:
        _say(str(exc))
        return EXIT_KEY
    except InsufficientBalanceError as exc:
        _say(str(exc))
        return EXIT_BALANCE
    except (ConfigurationError, ValueError) as exc:
        _say(str(exc))
        return EXIT_USAGE
    except (QxtError, OSError) as exc:
        _say(f"{exc} No output was written; run again to retry (answers so far are kept in the checkpoint).")
        return EXIT_FAILURE
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _say(message: str) -> None:
    print(f"qxt: {message}", file=sys.stderr, flush=True)


def _run(args: argparse.Namespace) -> int:
    with _service(args) as service:
        if args.command == "balance":
            return _print_balance(service)
        if args.output is None and not args.dry_run:
            raise ConfigurationError("--output is required (or use --dry-run).")
        progress = args.progress if args.progress != "auto" else ("bar" if sys.stderr.isatty() else "log")
        options = CheckOptions(
            **service, concurrency=args.concurrency, rate=args.rate, budget=args.budget,
            max_age=parse_age(args.max_age), checkpoint=args.checkpoint, progress=progress,
        )  # fmt: skip
        source = open_source(args.input, encoding=args.encoding)
        if args.dry_run:
            print(run_sync(aplan_file(source, args.column, options)))
            return EXIT_OK
        writer = AtomicWriter(args.output, excel_friendly=args.excel_friendly)
        summary = run_sync(acheck_file(source, args.column, writer, options))
        _say(f"wrote {summary.rows_written:,} rows to {args.output}\n{summary}")
        return EXIT_OK


@contextlib.contextmanager
def _service(args: argparse.Namespace) -> Iterator[dict]:
    """The client options: the bundled simulator on loopback, or the configured service and key."""
    common = {"timeout": args.timeout, "retries": args.retries}
    if args.simulate:
        from .simulator import DEMO_APIKEY, Simulator, serve

        with serve(Simulator(latency=0.1)) as url:
            yield {"apikey": DEMO_APIKEY, "base_url": url, **common}
        return
    apikey = None
    if args.apikey_file is not None:
        try:
            apikey = args.apikey_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigurationError(f"Cannot read the key file {args.apikey_file}: {exc.strerror}.") from None
    if not (apikey or os.environ.get("QXT_APIKEY", "").strip()):
        raise MissingApiKeyError("No QXT API key: set $QXT_APIKEY or pass --apikey-file FILE.", hint="")
    yield {"apikey": apikey, "base_url": args.base_url, **common}


def _print_balance(service: dict) -> int:
    options = CheckOptions(**service)

    async def read():
        async with options.client() as client:
            return await read_balance(client)

    balance = run_sync(read())
    print(f"{balance.fee_type} {balance.balance}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
