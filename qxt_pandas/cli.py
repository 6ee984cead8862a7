"""The ``qxt`` command: ETL over exports of any size, thin over the library."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO, cast

from . import __version__
from .command.files import numbers_in, open_source
from .command.outputs import MANIFEST, AtomicWriter, Targets
from .command.stream import Summary, check_file, plan_file
from .errors import (
    CheckpointError,
    ConfigurationError,
    InsufficientBalanceError,
    InvalidApiKeyError,
    IpNotAllowedError,
    MissingApiKeyError,
    QxtError,
    StoreUnavailableError,
)
from .masking import mask_text, numbers_shown
from .money import parse_price, price_from_env
from .options import CheckOptions, parse_age
from .pipeline import read_balance
from .reports.report import report
from .service._secret import Secret
from .service.concurrency import AUTO, MAX_CONCURRENCY
from .service.engine import DEFAULT_PATIENCE
from .service.progress import stamp
from .service.protocol import Balance
from .stores import is_database, refuse_foreign, shown
from .stores.copy import copy_answers
from .stores.forget import forget
from .system.durable import write_atomically
from .system.sync import run_sync

__all__ = ["EXIT_CODES", "main"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_KEY, EXIT_BALANCE, EXIT_UNANSWERED = 0, 1, 2, 3, 4, 5
EXIT_INTERRUPTED = 130
EXIT_CODES = {
    EXIT_OK: "success: every valid number has its answer",
    EXIT_FAILURE: "other failure (network, service, disk): run again",
    EXIT_USAGE: "usage error: arguments, input file, column, output, checkpoint (running again will not help)",
    EXIT_KEY: "no key, bad key, or this machine's IP is not on the account's allow-list",
    EXIT_BALANCE: "balance exhausted or too low for the run (answers so far are in the checkpoint)",
    EXIT_UNANSWERED: "finished and wrote the output, but some numbers are unanswered (failed after retries, or "
    "beyond --budget): run again to ask for them",
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
    commands = parser.add_subparsers(dest="command", required=True,
                                     metavar="{check,report,forget,copy,balance,simulate}")  # fmt: skip

    def privacy_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--store-key-file", type=Path, metavar="FILE",
                       help="the store key (default $QXT_STORE_KEY): numbers kept only as keyed hashes")  # fmt: skip
        p.add_argument("--show-numbers", action="store_true",
                       help="show numbers whole in messages (default: masked, 139****5391)")  # fmt: skip

    def service_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--base-url", help="service URL (default $QXT_BASE_URL, then the vendor)")
        p.add_argument("--apikey-file", type=Path, help="read the API key from this file (default $QXT_APIKEY)")
        p.add_argument("--simulate", action="store_true", help="run against the bundled simulator on loopback")
        p.add_argument("--timeout", type=float, default=10.0, help="seconds per attempt (default 10)")
        p.add_argument("--retries", type=int, default=3, help="retries of transient faults (default 3)")

    def price_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--price", type=_price, metavar="YUAN",
                       help="yuan per query (default $QXT_PRICE), e.g. 0.05: costs shown in yuan")  # fmt: skip

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=summary, description=description, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip

    check = command(
        "check", "check a column of an export and write it with the results",
        "Check the numbers in one column of INPUT (CSV/TSV, Parquet, .xlsx) and write every row "
        "with the result columns to OUTPUT (.parquet, .csv, .tsv, .xlsx). Each distinct number is paid for once; "
        "with --checkpoint, a second run pays only for what is new.",
    )  # fmt: skip
    check.add_argument("input", type=Path)
    check.add_argument("--column", required=True, help="the column holding the mobile numbers")
    check.add_argument("--output", type=Path,
                       help="the output file (.parquet, .csv, .tsv, .xlsx); not needed for --dry-run")  # fmt: skip
    check.add_argument("--split", action="store_true",
                       help="also write each outcome's rows beside OUTPUT: OUT.正常.csv, OUT.空号.csv, ..., "
                       "OUT.invalid.csv, OUT.unknown.csv, OUT.unanswered.csv")  # fmt: skip
    check.add_argument("--checkpoint", type=_location,
                       help="checkpoint directory, or a PostgreSQL URI (postgresql://...): resume, never pay twice "
                       "(default: OUTPUT's name with .qxt, "
                       "beside it)")  # fmt: skip
    check.add_argument("--overwrite", action="store_true",
                       help="replace an OUTPUT (or split file) that qxt did not write; never the input")  # fmt: skip
    check.add_argument("--no-checkpoint", action="store_true",
                       help="keep no checkpoint: answers paid for are lost if the run fails")  # fmt: skip
    check.add_argument(
        "--concurrency",
        default="auto",
        type=_concurrency,
        help="requests in flight: auto (adapt to the service; the default) or a fixed number",
    )
    check.add_argument(
        "--max-concurrency",
        type=int,
        default=MAX_CONCURRENCY,
        help=f"the most requests in flight with --concurrency auto (default {MAX_CONCURRENCY})",
    )
    check.add_argument("--patience", type=float, default=DEFAULT_PATIENCE,
                       help="seconds a run goes on while the service refuses every request "
                       f"(default {DEFAULT_PATIENCE:.0f}); then the rest is left unanswered (exit 5)")  # fmt: skip
    check.add_argument("--rate", type=float, help="most requests started per second")
    check.add_argument("--budget", type=int, help="most paid queries this run")
    check.add_argument("--max-age", help="ask again for stored answers older than this, e.g. 90d, 12h")
    check.add_argument("--retry-unreadable", action="store_true",
                       help="ask again numbers whose stored answer was charged but could not be read "
                       "(pays again)")  # fmt: skip
    check.add_argument("--encoding", help="input encoding (default: detected; utf-8, utf-8-sig, gbk, gb18030)")
    check.add_argument("--sheet", help="the sheet of an .xlsx input: its name or number (default: the first)")
    check.add_argument("--excel-friendly", action="store_true",
                       help="CSV for Excel: a UTF-8 BOM, formulas defused, phone numbers kept as text")  # fmt: skip
    check.add_argument("--output-encoding", default="utf-8", choices=["utf-8", "gbk"],
                       help="CSV/TSV output encoding (default utf-8; gbk for systems that read only GBK)")  # fmt: skip
    check.add_argument("--dry-run", action="store_true", help="print the plan and spend nothing")
    check.add_argument("--progress", choices=["auto", "bar", "log", "json", "off"], default="auto",
                       help="a bar when stderr is a terminal, plain log lines when not (default auto); json: "
                            "an object a line, twice a second, for programs")  # fmt: skip
    check.add_argument("--retention", metavar="AGE",
                       help="remove answers older than AGE (e.g. 180d) after the run; never use them")  # fmt: skip
    check.add_argument("--mask-output", action="store_true",
                       help="write numbers masked (139****5391) in the output and split files")  # fmt: skip
    service_options(check)
    privacy_options(check)
    price_option(check)

    forget = command(
        "forget", "remove answers from a store for good, by number or by age",
        "Remove from STORE (a checkpoint directory or a PostgreSQL URI) every answer for the numbers "
        "in --numbers FILE (one a line, any spelling; or a column of a CSV/xlsx/Parquet with --column), and/or "
        "older than --older-than AGE. Prints how many numbers' answers were removed.",
    )  # fmt: skip
    forget.add_argument("store", type=_location, help="a checkpoint directory or a PostgreSQL URI")
    forget.add_argument("--numbers", type=Path, metavar="FILE", help="the numbers to forget")
    forget.add_argument("--column", help="the column of FILE holding them (a CSV, TSV, .xlsx or Parquet file; "
                        "default: the one that looks most like mobile numbers)")  # fmt: skip
    forget.add_argument("--older-than", metavar="AGE", help="forget answers older than AGE, e.g. 180d, 12h")
    forget.add_argument("--all", action="store_true", help="with --older-than 0: yes, every answer")
    forget.add_argument("--wait", default="60s", metavar="AGE",
                        help="how long to wait for live runs asking these numbers (default 60s)")  # fmt: skip
    forget.add_argument("--dry-run", action="store_true", help="count what would be removed; remove nothing")
    privacy_options(forget)

    copy = command(
        "copy", "copy every answer and receipt from one store to another",
        "Copy the answers and receipts of the store FROM (a checkpoint directory or a PostgreSQL URI) into TO "
        "(made if need be), with their times and service; answers TO holds already, as new or newer, are not "
        "copied again. With a store key (--store-key-file, $QXT_STORE_KEY), a plain FROM becomes keyed hashes "
        "in TO; a keyed FROM needs its own key.",
    )  # fmt: skip
    copy.add_argument("source", type=_location, metavar="FROM", help="a checkpoint directory or a PostgreSQL URI")
    copy.add_argument("destination", type=_location, metavar="TO", help="a checkpoint directory or a PostgreSQL URI")
    copy.add_argument("--store-key-file", type=Path, metavar="FILE",
                      help="the store key (default $QXT_STORE_KEY): numbers only as keyed hashes in TO")  # fmt: skip

    report = command(
        "report", "what a checkpoint holds and what each run was charged",
        "Summarize CHECKPOINT: numbers answered by Status, carrier and province, the share ported, "
        "and every run's receipt (balance before and after; charged against delivered).",
    )  # fmt: skip
    report.add_argument("checkpoint", type=_location, help="a checkpoint directory or a PostgreSQL URI")
    report.add_argument("--json", action="store_true", help="print the report as JSON, for machines")
    report.add_argument("--html", type=Path, metavar="FILE", help="also write a self-contained HTML page")
    price_option(report)

    balance = commands.add_parser("balance", help="print the account's fee type and balance")
    service_options(balance)

    serve = commands.add_parser("serve", help="a web page to check files without writing code (the serve extra)")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    serve.add_argument(
        "--port",
        type=int,
        default=8765,
        help="port (0: a free one); the first line printed is the URL, the next the token",
    )
    serve.add_argument("--checkpoint", type=_location, metavar="STORE",
                       help="the answer store all jobs share (default: answers.qxt in the data dir)")  # fmt: skip
    serve.add_argument("--simulate", action="store_true", help="run against the bundled simulator (no key, no cost)")
    serve.add_argument("--base-url", help="the service's URL (default $QXT_BASE_URL, then the vendor)")
    serve.add_argument("--max-upload", default="200MB", help="the largest file accepted (default 200MB)")
    serve.add_argument("--max-data", default="10GB",
                       help="the most the data dir may hold, uploads and results (default 10GB)")  # fmt: skip
    serve.add_argument("--keep-days", type=float, default=7, help="jobs and their files are deleted after this")
    serve.add_argument("--data-dir", type=Path, help="where jobs are kept (default ~/.local/share/qxt-pandas/serve)")
    price_option(serve)

    simulate = commands.add_parser("simulate", help="serve the bundled simulator on loopback until Ctrl-C")
    simulate.add_argument("--port", type=int, default=8080)
    simulate.add_argument("--latency", type=float, default=0.1)
    simulate.add_argument("--jitter", type=float, default=0.0)
    simulate.add_argument("--faults", type=float, default=0.0)
    simulate.add_argument("--balance", type=int, default=1_000_000)
    simulate.add_argument("--capacity", type=int, help="requests held at once; beyond, -8 (default: no limit)")
    simulate.add_argument("--shape", default="json",
                          help="how answers are written: json (default), or a shape the vendor's document shows: "
                          "document, empty, gbk, unreadable, mixed")  # fmt: skip
    return parser


def main(argv: list[str] | None = None, *, stopped_early: Sequence[int] | None = None) -> int:
    """Run the command; returns its exit code (see ``qxt --help``). ``stopped_early``: the stops (signal
    numbers) that came before this function was called, noted by the ``qxt`` script while Python imported."""
    args = _parser().parse_args(argv)
    _memory_pool()
    if args.command == "simulate":
        from .simulator.__main__ import main as simulate

        capacity = ["--capacity", str(args.capacity)] if args.capacity is not None else []
        return simulate(["--port", str(args.port), "--latency", str(args.latency), "--jitter", str(args.jitter),
                         "--faults", str(args.faults), "--balance", str(args.balance), "--shape", args.shape,
                         *capacity])  # fmt: skip
    if args.command == "serve":
        return _serve(args)
    run = _Run(args)
    # An ETL scheduler's stop, and a closed ssh session or terminal: as Ctrl-C (drain, keep what was paid for).
    previous = {sig: signal.signal(sig, _interrupt) for sig in _STOPS}
    if stopped_early is not None:  # the qxt script noted Ctrl-C too while it started: Ctrl-C is Ctrl-C again
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    if stopped_early:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _say(f"stopped ({signal.Signals(stopped_early[0]).name}) while starting: nothing was read, written or paid "
             "for. Run the same command again.")  # fmt: skip
        return EXIT_INTERRUPTED
    global _JSON
    _JSON = getattr(args, "progress", None) == "json"
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _BestEffort(sys.stdout), _BestEffort(sys.stderr)  # a closed pipe never stops a run
    orphaned = _watch_parent()
    try:
        code = _outcome(run)
        if _JSON:  # the last line a scheduler parses
            print(json.dumps({"ts": stamp(), "summary": run.facts(code)}, ensure_ascii=False), file=sys.stderr)
        return code
    finally:
        _JSON = False
        orphaned.set()
        sys.stdout, sys.stderr = streams
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _outcome(run: _Run) -> int:
    """Run it; every failure as its message and its documented exit code."""
    try:
        with warnings.catch_warnings(), numbers_shown(getattr(run.args, "show_numbers", False)):
            warnings.showwarning = _show_warning
            return run.main()
    except KeyboardInterrupt:
        _say(f"interrupted. {run.wrote()}{run.kept()} Run the same command again to resume.")
        return EXIT_INTERRUPTED
    except (MissingApiKeyError, InvalidApiKeyError, IpNotAllowedError) as exc:
        _say(str(exc))
        return EXIT_KEY
    except InsufficientBalanceError as exc:
        _say(re.sub(r"pass budget=(\d+)", r"pass --budget \1", str(exc)))  # the option as a command-line user types it
        return EXIT_BALANCE
    except CheckpointError as exc:
        _say(str(exc))
        return EXIT_USAGE
    except (ConfigurationError, ValueError) as exc:
        _say(f"{exc}{run.kept(after_paying_only=True)}")
        return EXIT_USAGE
    except StoreUnavailableError as exc:  # it says itself where the answers it could not store are
        _say(_sentences(str(exc), run.wrote(), "Run again to retry."))
        return EXIT_FAILURE
    except (QxtError, OSError) as exc:
        kept = " Nothing was paid for." if getattr(exc, "paid_nothing", False) else run.kept()
        _say(_sentences(_describe(exc), run.wrote(), kept, "Run again to retry."))
        return EXIT_FAILURE


def _serve(args: argparse.Namespace) -> int:
    try:
        from .console.app import parse_size, serve_forever
    except ImportError:
        _say("qxt serve needs the serve extra: pip install 'qxt-pandas[serve]'")
        return EXIT_USAGE
    try:
        limit, quota = parse_size(args.max_upload), parse_size(args.max_data, name="--max-data")
        price = args.price if args.price is not None else price_from_env()
    except ValueError as exc:
        _say(str(exc))
        return EXIT_USAGE
    return serve_forever(
        host=args.host,
        port=args.port,
        checkpoint=args.checkpoint,
        simulate=args.simulate,
        base_url=args.base_url,
        max_upload=limit,
        max_data=quota,
        keep_days=args.keep_days,
        data_dir=args.data_dir,
        price=price,
    )


def _memory_pool() -> None:
    """jemalloc for Arrow when the wheel has it, returning freed pages after 100 ms: the peak is what counts.

    Measured on a re-run over 1M distinct numbers, the peak against Arrow's default mimalloc: see
    docs/cli.md. The command owns its process, so it may choose; the library leaves the choice to
    the application.
    """
    import pyarrow as pa

    if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
        with contextlib.suppress(NotImplementedError, AttributeError):
            pa.set_memory_pool(pa.jemalloc_memory_pool())
            pa.jemalloc_set_decay_ms(100)


def _concurrency(text: str) -> int | str:
    """``auto`` or a number; CheckOptions says what is wrong with a bad number."""
    return text if text == AUTO else int(text) if text.lstrip("-").isdigit() else text


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


_STOPS = [signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])]


class _BestEffort:
    """A stream whose failure never stops a run: after a closed pipe (EPIPE) or a closed terminal (EIO),
    what is written goes nowhere, and the descriptor points at /dev/null so that no flush at exit fails."""

    def __init__(self, stream: TextIO) -> None:
        self._stream, self.closed_by_reader = stream, False

    def write(self, text: str) -> int:
        if not self.closed_by_reader:
            try:
                return self._stream.write(text)
            except (OSError, ValueError):
                self._gone()
        return len(text)

    def flush(self) -> None:
        if not self.closed_by_reader:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self._gone()

    def _gone(self) -> None:
        self.closed_by_reader = True
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding: the stream's own
        return getattr(self._stream, name)


def _watch_parent() -> threading.Event:
    """Under ``qxt serve`` ($QXT_PARENT_PID), a server that dies (even by SIGKILL) stops this run as Ctrl-C
    would: what is in flight is kept. Polled twice a second; set the event returned to stop watching."""
    done = threading.Event()
    parent = os.environ.get("QXT_PARENT_PID", "")
    if parent.isdigit():

        def watch() -> None:
            while not done.wait(0.5):
                if os.getppid() != int(parent):
                    os.kill(os.getpid(), signal.SIGTERM)
                    return

        threading.Thread(target=watch, name="qxt-parent-watch", daemon=True).start()
    return done


_JSON = False  # --progress json: every line on stderr is a JSON object a scheduler can parse


_said: list[str] = []  # what qxt said last (the closing summary's "message")


def _say(message: str) -> None:
    _said[:] = [mask_text(message).split("\n", 1)[0]]
    if _JSON:
        print(json.dumps({"ts": stamp(), "message": mask_text(message)}, ensure_ascii=False), file=sys.stderr,
              flush=True)  # fmt: skip
    else:
        print(f"qxt: {mask_text(message)}", file=sys.stderr, flush=True)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    _say(f"warning: {message}")


def _sentences(*parts: str) -> str:
    """Sentences joined by one space, the empty ones left out."""
    return " ".join(part.strip() for part in parts if part.strip())


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, QxtError):
        return f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}."
    return str(exc)


class _Run:
    """One invocation of ``check``, ``report`` or ``balance``: what it uses, and what it can truthfully say."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.checkpoint: Path | str | None = None
        self.writer: AtomicWriter | None = None
        self.scanned = False  # past pass 1: from here on, queries may have been paid for
        self.summary: Summary | None = None  # a check's, once it has written its output

    def wrote(self) -> str:
        if self.args.command != "check":
            return ""
        if self.writer is not None and self.writer.committed:
            if getattr(self.args, "split", False):  # published as one set: a stop is told after the last rename
                listed = self.writer.path.with_name(self.writer.path.stem + MANIFEST)
                return f"The output {self.writer.path} was complete and is in place, with its split files ({listed})."
            return f"The output {self.writer.path} was complete and is in place."
        return "No output was written."

    def facts(self, code: int) -> dict[str, Any]:
        """The run in one object for a scheduler (``--progress json``'s last line): rows, paid, from the store,
        unanswered, the exit code, the files in place, the output left as it was (``held_back``: another run was
        asking some numbers), and the closing message's first line."""
        summary, committed = self.summary, self.writer is not None and self.writer.committed
        outputs = ([str(self.writer.path)] if committed and self.writer else []) + (
            summary.split_files if summary else []
        )
        return {
            "command": self.args.command, "exit": code, "rows": summary.plan.rows if summary else None,
            "paid": summary.paid if summary else None, "from_store": summary.plan.in_checkpoint if summary else None,
            "unanswered": summary.unanswered if summary else None, "outputs": outputs,
            "held_back": str(summary.held_back) if summary and summary.held_back else None,
            "checkpoint": shown(self.checkpoint) if self.checkpoint is not None else None,
            "message": _said[0] if _said else None,  # why it ended so: the closing message's first line
        }  # fmt: skip

    def kept(self, after_paying_only: bool = False) -> str:
        if self.args.command != "check" or (after_paying_only and not self.scanned):
            return ""  # report, forget, balance pay for nothing
        if self.checkpoint is not None:
            return f" Answers paid for are kept in {shown(self.checkpoint)}; a new run does not pay for them again."
        return " Without a checkpoint (--no-checkpoint), answers paid for in this run are not kept."

    def main(self) -> int:
        args = self.args
        if args.command == "report":
            return _report(args)
        if args.command == "forget":
            return _forget(args)
        if args.command == "copy":
            copied = copy_answers(args.source, args.destination, store_key=_store_key(args))
            print(f"{copied} from {shown(args.source)} to {shown(args.destination)}")
            return EXIT_OK
        with _service(args) as service:
            if args.command == "balance":
                return _print_balance(CheckOptions(**service))
            if args.output is None and not args.dry_run:
                raise ConfigurationError("--output is required (or use --dry-run).")
            progress = args.progress if args.progress != "auto" else ("bar" if sys.stderr.isatty() else "log")
            self.checkpoint = _checkpoint_path(args)
            options = CheckOptions(  # every option checked here, before the input is even opened
                **service, concurrency=args.concurrency, max_concurrency=args.max_concurrency, rate=args.rate,
                patience=args.patience, budget=args.budget, max_age=args.max_age,
                checkpoint=self.checkpoint, progress=progress, retry_unreadable=args.retry_unreadable,
                store_key=_store_key(args), retention=args.retention, price=args.price,
            )  # fmt: skip
            directory = self.checkpoint if isinstance(self.checkpoint, Path) else None
            if directory is not None:
                refuse_foreign(directory)  # a user's directory is named before anything else
            targets = Targets(inputs=[args.input], keep=[directory] if directory else [], overwrite=args.overwrite)
            if args.output is not None:
                targets.refuse([args.output])
                self.writer = AtomicWriter(args.output, excel_friendly=args.excel_friendly,
                                           encoding=args.output_encoding)  # fmt: skip
            source = open_source(args.input, encoding=args.encoding, sheet=args.sheet)
            if source.note:
                _say(source.note)
            if args.dry_run:
                print(plan_file(source, args.column, options))
                return EXIT_OK
            assert self.writer is not None
            summary = check_file(source, args.column, self.writer, options, on_scanned=self._scanned,
                                 split=args.split, targets=targets, mask_output=args.mask_output)  # fmt: skip
            self.summary = summary
            where = f"; answers kept in {shown(self.checkpoint)}" if self.checkpoint else ""
            plain_csv = args.output.suffix.lower() in (".csv", ".tsv") and not args.excel_friendly
            hint = ("\nfor Excel: write .xlsx (--output checked.xlsx), or pass --excel-friendly (a BOM, numbers "
                    "kept as text)") if plain_csv else ""  # fmt: skip
            if summary.held_back is not None:  # another run was asking some numbers: its output is not replaced
                _say(f"wrote {summary.rows_written:,} rows to {self.writer.path}, not to {args.output}: another run "
                     f"on this checkpoint was asking {summary.unanswered:,} of these numbers and did not finish "
                     f"within --patience, so {args.output} was left as it was (that run writes its own){where}."
                     f"\n{summary}")  # fmt: skip
                return EXIT_UNANSWERED
            _say(f"wrote {summary.rows_written:,} rows to {args.output}{where}\n{summary}{hint}")
            return EXIT_UNANSWERED if summary.unanswered else EXIT_OK

    def _scanned(self) -> None:
        self.scanned = True


def _location(text: str) -> Path | str:
    """A checkpoint argument: a database URI as it is (a Path would fold its ``//``), else a directory."""
    return text if is_database(text) else Path(text)


def _checkpoint_path(args: argparse.Namespace) -> Path | str | None:
    """``--checkpoint``, else ``<output stem>.qxt`` beside the output (unless --no-checkpoint)."""
    if args.no_checkpoint:
        if args.checkpoint is not None:
            raise ConfigurationError("--checkpoint and --no-checkpoint contradict each other; give one.")
        return None
    if args.checkpoint is not None:
        return cast("Path | str", args.checkpoint)
    if args.output is None:
        return None
    default = args.output.with_name(args.output.stem + ".qxt")
    return default if not args.dry_run or default.is_dir() else None  # a dry run creates nothing


@contextlib.contextmanager
def _service(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
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
            apikey = Secret.wrap(args.apikey_file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigurationError(f"Cannot read the key file {args.apikey_file}: {exc.strerror}.") from None
    if not (apikey or os.environ.get("QXT_APIKEY", "").strip()):
        raise MissingApiKeyError("No QXT API key: set $QXT_APIKEY or pass --apikey-file FILE.", hint="")
    yield {"apikey": apikey, "base_url": args.base_url, **common}


def _store_key(args: argparse.Namespace) -> Secret | None:
    """``--store-key-file``'s key (None: CheckOptions reads $QXT_STORE_KEY)."""
    if args.store_key_file is None:
        return None
    try:
        return Secret.wrap(args.store_key_file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"Cannot read the store key file {args.store_key_file}: {exc.strerror}.") from None


def _forget(args: argparse.Namespace) -> int:
    if args.numbers is None and args.older_than is None:
        raise ConfigurationError("qxt forget needs --numbers FILE or --older-than AGE (or both).")
    if args.older_than is not None and parse_age(args.older_than, name="--older-than") == 0 and not args.all:
        raise ConfigurationError("--older-than 0 would remove every answer in the store; pass --all as well to "
                                 "mean it.")  # fmt: skip
    numbers = numbers_in(args.numbers, args.column) if args.numbers is not None else None
    removed = forget(args.store, numbers=numbers, older_than=args.older_than, store_key=_store_key(args),
                     dry_run=args.dry_run, wait=args.wait)  # fmt: skip
    print(f"{removed} {'would be removed (dry run)' if args.dry_run else 'removed'} from {shown(args.store)}")
    if removed.not_numbers:
        _say(f"{removed.not_numbers:,} {'line was' if removed.not_numbers == 1 else 'lines were'} not a mobile "
             "number (a header, a landline, a typo?) and forgot nothing.")  # fmt: skip
    if removed.not_held:
        _say(f"{removed.not_held:,} of the numbers given had no answer in the store.")
    if numbers is not None and not removed and not removed.not_held:
        _say(f"no line of {args.numbers} was a mobile number: nothing was forgotten. One number a line, or name "
             "the column of a table with --column.")  # fmt: skip
        return EXIT_USAGE
    if removed.live:
        _say(f"{removed.live:,} {'run was' if removed.live == 1 else 'runs were'} still going on the store: an "
             "answer stored later for one of these numbers would not be forgotten. Run the same qxt forget again "
             "once they have ended.")  # fmt: skip
        return EXIT_FAILURE
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    if args.html is not None and args.html.is_dir():
        raise ConfigurationError(
            f"--html {args.html} is a directory; name the page's file, e.g. {args.html / 'report.html'}."
        )
    made = report(args.checkpoint, price=args.price if args.price is not None else price_from_env())
    print(json.dumps(made.to_dict(), ensure_ascii=False, indent=2) if args.json else made)
    if args.html is not None:
        write_atomically(args.html, made.to_html().encode())
        _say(f"wrote {args.html}")
    return EXIT_OK


def _price(text: str) -> Decimal | None:
    try:
        return parse_price(text, name="--price")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _print_balance(options: CheckOptions) -> int:
    async def read() -> Balance:
        async with options.client() as client:
            return await read_balance(client)

    balance = run_sync(read())
    print(f"{balance.fee_type} {balance.balance}")
    return EXIT_OK


def exit_with(code: int) -> None:
    """Exit with ``code``, a stop during the interpreter's shutdown (~0.1 s) ignored: the exit code is decided, and
    Python resets its own handlers to the default as it finalizes (the process would die by the signal, 143)."""
    for sig in (*_STOPS, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    sys.exit(code)


if __name__ == "__main__":
    exit_with(main())
