"""``qxt serve``: a web console over the same pipeline and store, for people who do not code.

Upload a CSV/TSV/xlsx/Parquet export, see the plan (free), run, watch, stop, download the
checked file, the split files as one zip and the HTML report. The page is plain HTML and a
small script (``qxt_pandas/console/_page/``), served by this Starlette app; the page uses the same JSON
API scripts and tests use:

    POST /api/jobs                  multipart ``file`` (and ``column``): {"id", "plan", ...}, nothing paid
    POST /api/jobs/{id}/plan        {"column"}: the plan for another column
    POST /api/jobs/{id}/run         run it (queued while another job pays from the same store)
    POST /api/jobs/{id}/stop        stop: answers in flight are kept; run again to resume
    GET  /api/jobs, /api/jobs/{id}  state, progress, summary, files
    GET  /api/jobs/{id}/events      the same as Server-Sent Events, twice a second
    GET  /api/jobs/{id}/files/{name}

A run is ``qxt check`` in a process of its own (``--progress json``, ``--split``), so it keeps every
promise the command keeps: a stop is the command's first Ctrl-C (drain, keep what was paid for), a
server that dies takes no answer with it, and the store's claims protect against runs elsewhere.

Security: every request needs the token (printed in the URL at start, or ``$QXT_SERVE_TOKEN``) as
``Authorization: Bearer``, or the HttpOnly SameSite=Strict cookie the first visit with ``?token=``
sets; a POST carried by the cookie must come from this origin. The QXT key stays in the server's
environment; uploads are bounded, stored under names the server makes, and deleted with their job.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import re
import secrets
import shutil
import signal
import socket
import sys
import time
import uuid
import zipfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from ..command.files import InputError, guess_column, open_source
from ..masking import mask_text
from ..money import cost, yuan
from ..options import with_options
from ..pipeline import Plan
from ..reports.labels import chinese, label, ordered
from ..reports.report import Report, report
from ..stores import open_existing, shown

__all__ = ["Console", "create_app"]

_PAGE = Path(__file__).parent / "_page"
_SUFFIXES = {
    ".csv": ".csv",
    ".tsv": ".tsv",
    ".txt": ".csv",
    ".xlsx": ".xlsx",
    ".parquet": ".parquet",
    ".pq": ".parquet",
}
_SPLIT = (".csv", ".xlsx", ".parquet")  # the split files --split writes beside the checked file
#: The most columns a file may have here (planning guesses the phone column by reading each).
MAX_COLUMNS = 2_000
_HEADROOM = 64 * 2**20  # bytes a disk keeps free beyond an upload and its results
_MAX_UNPACKED = 2 * 2**30  # a workbook's XML, unpacked: more than Excel's 1,048,576 rows hold in practice
_COOKIE = "qxt_token"  # and the port: consoles on one host keep a cookie each
#: What a token may hold: characters a person can type and a URL carries as they are.
_TOKEN = re.compile(r"[A-Za-z0-9._~-]{16,256}")
#: A job's states: planned (uploaded, nothing paid), queued, running, stopping, done, stopped, failed.
_ACTIVE = ("queued", "running", "stopping")


@dataclass
class Job:
    """One uploaded file and what became of it; kept as ``job.json`` in its own directory."""

    id: str
    name: str  # the uploaded file's name, for display and downloads only (never a path)
    suffix: str
    created: float
    column: str | None = None
    columns: list[str] = field(default_factory=list)
    sheet: str | None = None  # a workbook's sheet the plan reads, of ``sheets``
    sheets: list[str] = field(default_factory=list)
    plan: dict[str, Any] | None = None
    state: str = "planned"
    progress: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)  # the downloads, by the names the user sees
    stored: dict[str, str] = field(default_factory=dict)  # a download's name -> the file's name on disk
    error: str | None = None
    log: list[str] = field(default_factory=list)
    parts: dict[str, str] = field(default_factory=dict)  # an outcome (正常, invalid …) -> its download's name
    runs: list[dict[str, Any]] = field(default_factory=list)  # the job's runs: {"pid", "host"}, for its report
    problem: str | None = None  # what keeps the job from running, said on the page (no number column found)

    def public(self) -> dict[str, Any]:
        done = self.progress.get("done", 0)
        total = self.progress.get("total", (self.plan or {}).get("to_query", 0))
        return {**asdict(self), "done": done, "total": total}


class Console:
    """The server's jobs, in ``root``; one paying run per store at a time."""

    def __init__(self, root: Path, *, checkpoint: str, base_url: str | None, env: dict[str, str],
                 max_upload: int, keep_days: float, simulated: bool = False,
                 max_data: int = 10 * 2**30, price: Decimal | None = None) -> None:  # fmt: skip
        self.root, self.checkpoint, self.base_url, self.env = root, checkpoint, base_url, env
        self.price = price  # yuan per query: plans, progress and reports in yuan
        self.simulated = simulated
        self.max_upload, self.keep_days, self.max_data = max_upload, keep_days, max_data
        (root / "jobs").mkdir(parents=True, exist_ok=True)
        self.jobs: dict[str, Job] = {}
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak references to tasks
        self._paying = asyncio.Lock()  # one paying run per store from this server; claims cover the rest
        self._load()

    # -- jobs on disk ----------------------------------------------------------------------------

    def _load(self) -> None:
        for path in sorted((self.root / "jobs").glob("*/job.json")):
            with contextlib.suppress(OSError, ValueError, TypeError):
                job = Job(**json.loads(path.read_text(encoding="utf-8")))
                if job.state in _ACTIVE:  # the server stopped under it: Run resumes
                    job.state, job.error = "stopped", "the server restarted during the run; run again to resume"
                self.jobs[job.id] = job
                self.save(job)
        self.sweep()

    def sweep(self) -> int:
        """Delete the jobs older than ``keep_days``, their upload and results with them; how many."""
        cutoff = time.time() - self.keep_days * 86400
        old = [job for job in self.jobs.values() if job.created < cutoff and job.state not in _ACTIVE]
        for job in old:
            self.delete(job)
        return len(old)

    async def sweeping(self, every: float = 3600.0) -> None:
        """:meth:`sweep` now and then while the server runs."""
        while True:
            await asyncio.sleep(every)
            self.sweep()

    def folder(self, job: Job) -> Path:
        return self.root / "jobs" / job.id

    def input(self, job: Job) -> Path:
        return self.folder(job) / f"input{job.suffix}"

    def save(self, job: Job) -> None:
        tmp = self.folder(job) / "job.json.tmp"
        tmp.write_text(json.dumps(asdict(job), ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, self.folder(job) / "job.json")

    # -- upload and plan -------------------------------------------------------------------------

    async def upload(self, request: Request) -> Job:
        """The uploaded file streamed to disk under a name the server makes; 413 past ``max_upload``."""
        length = request.headers.get("content-length")
        if length is None or not length.isdigit():  # (the form parser would spool an unbounded body first)
            raise _Refusal(411, "缺少文件长度 · send the upload with a Content-Length (browsers and httpx do)")
        declared = int(length)
        if declared > self.max_upload + 64 * 1024:
            raise self._too_large()
        form = await request.form(max_files=1, max_fields=4, max_part_size=64 * 1024)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise _Refusal(400, "没有文件 · send the export as the multipart field 'file'")
        name = _display_name(upload.filename or "export.csv")
        suffix = _SUFFIXES.get(Path(name).suffix.lower())
        if suffix is None:
            raise _Refusal(400, f"文件类型不支持 · {name}: choose a .csv, .tsv, .txt, .xlsx or .parquet file")
        used = sum(f.stat().st_size for f in (self.root / "jobs").rglob("*") if f.is_file())
        if used + 2 * declared > self.max_data:  # the upload and its results (about as large again)
            raise _Refusal(507, f"存储已满 · this console's files take {_size(used)} of its {_size(self.max_data)} "
                                "(--max-data): delete finished jobs, or ask whoever runs it for more")  # fmt: skip
        free = shutil.disk_usage(self.root).free
        if free < 2 * declared + _HEADROOM:  # the upload, its results (about as large again), and room to spare
            raise _Refusal(507, f"磁盘空间不足 · the server's disk is too full for this file ({_size(free)} free): "
                                "ask whoever runs it to make room, or delete finished jobs")  # fmt: skip
        job = Job(id=uuid.uuid4().hex[:12], name=name, suffix=suffix, created=time.time())
        self.folder(job).mkdir(parents=True)
        size = 0
        try:
            with open(self.input(job), "wb") as out:
                while chunk := await upload.read(1 << 20):
                    if size == 0:  # the content says what the file is, not its name (a CSV called .xlsx)
                        job.suffix = _sniffed(chunk, suffix)
                    size += len(chunk)
                    if size > self.max_upload:
                        raise self._too_large()
                    out.write(chunk)
            if job.suffix != suffix:
                os.replace(self.folder(job) / f"input{suffix}", self.input(job))
            if job.suffix == ".xlsx":
                _refuse_bomb(self.input(job), job)
        except OSError as exc:  # a full disk: said plainly, nothing half-written left
            shutil.rmtree(self.folder(job), ignore_errors=True)
            told = f"磁盘空间不足 · the upload could not be stored ({exc.strerror}); nothing was kept"
            raise _Refusal(507, told) from None
        except BaseException:
            shutil.rmtree(self.folder(job), ignore_errors=True)
            raise
        column = form.get("column")
        job.column = column if isinstance(column, str) and column else None
        self.jobs[job.id] = job
        try:
            await asyncio.to_thread(self.plan, job)
        except BaseException as exc:  # nothing of a failed upload stays on disk
            self.delete(job)
            if isinstance(exc, _Refusal) or not isinstance(exc, Exception):
                raise
            raise _unreadable(exc, self.input(job), job) from None
        return job

    def _too_large(self) -> _Refusal:
        return _Refusal(413, f"文件过大 · the file is larger than this server accepts ({_size(self.max_upload)})")

    def plan(self, job: Job, column: str | None = None, sheet: str | None = None) -> None:
        """The free plan for ``job`` (the column guessed when none is named; a workbook's ``sheet``, else the one
        chosen before, else its first): rows, invalid, to pay, balance."""
        from ..command.stream import plan_file

        if sheet and sheet != job.sheet:
            job.column = None  # another sheet: its own columns, its own guess
        try:
            source = open_source(self.input(job), sheet=sheet or job.sheet)
        except InputError as exc:
            raise _unreadable(exc, self.input(job), job) from None
        if len(source.columns) > MAX_COLUMNS:  # guessing the column reads each: 50,000 of them took 34 s
            raise _Refusal(400, f"列太多 · {job.name} has {len(source.columns):,} columns; the console takes at most "
                                f"{MAX_COLUMNS:,}. Keep the columns you need, or use qxt check --column.")  # fmt: skip
        job.columns = source.columns
        job.sheet, job.sheets = source.sheet, list(source.sheets)
        try:
            chosen = column or job.column or guess_column(source)
        except Exception as exc:  # a ragged or broken file, met while reading its first rows
            raise _unreadable(exc, self.input(job), job) from None
        if chosen is None:  # no column looks like phone numbers: the page asks, and Run waits for an answer
            job.column, job.plan = None, None
            job.problem = ("没有找到号码列：请在“号码列”中选择号码所在的列 · No column looks like mobile numbers: "
                           "choose the column that holds them under 号码列 Number column.")  # fmt: skip
            self.save(job)
            return
        if chosen not in source.columns:
            raise _Refusal(400, f"没有这一列 · {job.name} has no column {chosen!r}; its columns are {source.columns}")
        options = with_options(checkpoint=self.checkpoint, base_url=self.base_url, progress=False,
                               apikey=self.env.get("QXT_APIKEY"), price=self.price)  # fmt: skip
        try:
            plan = plan_file(source, chosen, options)
        except InputError as exc:
            raise _unreadable(exc, self.input(job), job) from None
        except Exception as exc:  # the balance could not be read: the key, the network
            raise _Refusal(502, "无法读取余额 · " + mask_text(str(exc))) from None
        job.column, job.plan = chosen, _planned(plan)
        job.problem = "文件没有数据行 · The file has no rows to check." if plan.rows == 0 else None
        self.save(job)
        with contextlib.suppress(Exception):  # the plan bound the store to the service that answered
            store = open_existing(self.checkpoint)
            self.simulated = self.simulated or bool(store.simulator)
            store.close()

    # -- run and stop ----------------------------------------------------------------------------

    async def run(self, job: Job) -> None:
        if job.state in _ACTIVE:
            return
        if job.column is None or job.plan is None:
            raise _Refusal(409, job.problem or "请先选择号码列 · choose the number column first")
        job.state, job.error, job.progress, job.log = "queued", None, {}, []
        self.save(job)
        task = asyncio.get_running_loop().create_task(self._run(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, job: Job) -> None:
        try:
            await self._run_command(job)
        except Exception as exc:  # never a job left "running" by a failure of the server's own
            job.state, job.error = "failed", mask_text(f"the server could not run the job: {exc}")
            self.save(job)

    async def _run_command(self, job: Job) -> None:
        async with self._paying:
            if job.state != "queued":  # stopped while queued
                return
            job.state = "running"
            self.save(job)
            out = self.folder(job) / "out"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            # Files on disk are named by the server (a user's long or odd name never reaches the file system);
            # downloads carry the user's name. --column=NAME: a column named "-phone" is a name, not an option.
            # CSV for the spreadsheet users the console serves: a BOM, formulas defused (a Status "=HYPERLINK").
            output = out / f"checked{'.csv' if job.suffix == '.tsv' else job.suffix}"
            args = [sys.executable, "-m", "qxt_pandas.cli", "check", str(self.input(job)),
                    f"--column={job.column}", "--output", str(output), "--split", "--checkpoint", self.checkpoint,
                    "--progress", "json",
                    *(["--excel-friendly"] if output.suffix == ".csv" else []),
                    *([f"--sheet={job.sheet}"] if job.sheet else [])]  # fmt: skip
            if self.base_url:
                args += ["--base-url", self.base_url]
            if self.price is not None:
                args += ["--price", str(self.price)]
            # Its own session: a Ctrl-C at the server's terminal reaches the server only, which then sends the
            # run exactly one SIGINT (a second would abandon what is in flight). $QXT_PARENT_PID: a run whose
            # server dies (even by SIGKILL) notices and drains.
            proc = await asyncio.create_subprocess_exec(*args, env={**self.env, "QXT_PARENT_PID": str(os.getpid())},
                                                        stdin=asyncio.subprocess.DEVNULL,
                                                        stdout=asyncio.subprocess.DEVNULL,
                                                        stderr=asyncio.subprocess.PIPE,
                                                        start_new_session=True)  # fmt: skip
            self._procs[job.id] = proc
            job.runs.append({"pid": proc.pid, "host": socket.gethostname()})
            self.save(job)
            assert proc.stderr is not None
            paid = None
            async for raw in proc.stderr:  # one JSON object a line (--progress json)
                line = raw.decode("utf-8", errors="replace").rstrip()
                try:
                    said = json.loads(line)
                except ValueError:
                    said = {"message": line}
                if not isinstance(said, dict):
                    said = {"message": line}
                if isinstance(said.get("progress"), dict):
                    job.progress = said["progress"]
                    if self.price is not None:  # what the run has cost so far, in yuan
                        job.progress["spent"] = yuan(cost(int(job.progress.get("paid") or 0), self.price))
                elif isinstance(said.get("summary"), dict):
                    paid = said["summary"].get("paid")
                else:
                    text = str(said.get("message") or said.get("note") or "")
                    for part in text.splitlines():
                        job.log.append(part.replace(str(self.input(job)), job.name).replace(str(out) + os.sep, ""))
            code = await proc.wait()
            self._procs.pop(job.id, None)
            job.stored, job.parts, job.summary = await asyncio.to_thread(self._collect, job, out, output, paid)
            job.files = list(job.stored)
            if code in (0, 5):
                job.state = "done"
            elif code == 130 or job.state == "stopping":
                job.state, job.error = "stopped", "stopped: the answers paid for are kept; run again to resume"
            else:
                job.state, job.error = "failed", (job.log[-1] if job.log else f"qxt check exited with {code}")
            self.save(job)

    def stop(self, job: Job) -> None:
        """The command's first Ctrl-C: nothing new is asked, answers in flight are kept."""
        proc = self._procs.get(job.id)
        if job.state == "stopping":  # a second Ctrl-C would abandon answers in flight, which may be paid for
            return
        if job.state == "queued":
            job.state, job.error = "stopped", "stopped before it started"
            self.save(job)
        elif proc is not None and proc.returncode is None:
            job.state = "stopping"
            proc.send_signal(signal.SIGINT)

    def _collect(
        self, job: Job, out: Path, output: Path, paid: int | None
    ) -> tuple[dict[str, str], dict[str, str], dict[str, Any]]:
        """The job's downloads (the name the user sees -> the file on disk), each outcome's download, and the
        summary. Downloads: the checked file (and as xlsx, for Excel); each outcome's rows (xlsx when they fit,
        else the split file), alone and all in one zip (``<name>.正常.xlsx``, ``<name>.无效号码.xlsx`` …); the
        job's own report (its rows, its numbers, its runs' charges); the report of the whole store."""
        files: dict[str, str] = {}
        parts: dict[str, str] = {}
        stem = Path(job.name).stem
        unfinished = output.with_name(f"{output.stem}.unfinished{output.suffix}")
        if not output.exists() and unfinished.exists():  # another run on the store was asking some numbers and
            files[f"{stem}.未完成{output.suffix}"] = unfinished.name  # did not finish within the patience (exit 5)
        if output.exists():
            files[f"{stem}.checked{output.suffix}"] = output.name
            excel = out / "checked.xlsx"
            if output.suffix != ".xlsx" and _as_workbook(output, excel):
                files[f"{stem}.checked.xlsx"] = excel.name
            split = sorted(p for p in out.iterdir() if p.name.startswith("checked.") and p.suffix in _SPLIT
                           and p not in (output, excel))  # fmt: skip
            for part in split:  # checked.invalid.csv -> <name>.无效号码.xlsx
                outcome = part.name.removeprefix("checked.").removesuffix(part.suffix)
                shown = part
                if part.suffix != ".xlsx" and _as_workbook(part, part.with_suffix(".xlsx")):
                    shown = part.with_suffix(".xlsx")
                parts[outcome] = f"{stem}.{chinese(outcome)}{shown.suffix}"
                files[parts[outcome]] = shown.name
            if parts:
                with zipfile.ZipFile(out / "split.zip", "w", zipfile.ZIP_DEFLATED) as zipped:
                    for name in parts.values():
                        zipped.write(out / files[name], name)
                files[f"{stem}.split.zip"] = "split.zip"
        summary: dict[str, Any] = {}
        mine = {(run["pid"], run["host"]) for run in job.runs}
        try:  # a report is a convenience: the run's outcome does not hang on it
            made = report(self.checkpoint, checked=output, title=job.name, price=self.price,
                          runs=lambda r: (r.get("pid"), r.get("host")) in mine)  # fmt: skip
            (out / "report.html").write_text(made.to_html(), encoding="utf-8")
            files[f"{stem}.report.html"] = "report.html"
            summary = _summary(made, paid, self.price)
        except Exception as exc:
            job.log.append(mask_text(f"no report of this job: {exc}"))
        with contextlib.suppress(Exception):
            (out / "store-report.html").write_text(report(self.checkpoint, price=self.price).to_html(),
                                                   encoding="utf-8")  # fmt: skip
            files["结果库报告.store-report.html"] = "store-report.html"
        return files, parts, summary

    async def close(self) -> None:
        """The server is stopping: each run gets the command's first Ctrl-C and up to 30 s to keep its answers."""
        running = [proc for proc in self._procs.values() if proc.returncode is None]
        for proc in running:
            proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 27  # within the documented 30 s, the streams' 2 s included
        for proc in running:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait(), max(deadline - time.monotonic(), 0.1))

    def delete(self, job: Job) -> None:
        self.jobs.pop(job.id, None)
        shutil.rmtree(self.folder(job), ignore_errors=True)


class _Refusal(Exception):
    """A request refused, with the status and a sentence for the page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _summary(made: Report, paid: int | None, price: Decimal | None) -> dict[str, Any]:
    """Rows by outcome in the checked file (in the order a person reads them, with their names and shares), and
    what the run paid (the command's own count, from its summary), in yuan too with a price."""
    rows = sum(made.rows.values())
    return {
        "rows": rows, "outcomes": dict(ordered(made.rows)), "order": [k for k, _ in ordered(made.rows)],
        "labels": {k: label(k) for k in made.rows},
        "shares": {k: round(100 * n / rows, 1) if rows else 0.0 for k, n in made.rows.items()},
        "paid": paid, "spent": None if paid is None or price is None else yuan(cost(paid, price)),
        "paid_by_job": made.paid, "spent_by_job": None if price is None else yuan(cost(made.paid, price)),
    }  # fmt: skip


def _planned(plan: Plan) -> dict[str, Any]:
    """The plan for the page: its counts, and its money as text (¥) when there is a price."""
    money: dict[str, str | None] = {"price": None, "cost": None, "balance_yuan": None}
    if plan.price is not None:
        money = {"price": yuan(plan.price), "cost": yuan(cost(plan.will_query, plan.price)),
                 "balance_yuan": None if plan.balance is None else yuan(cost(plan.balance, plan.price))}  # fmt: skip
    counts = {k: v for k, v in asdict(plan).items() if k != "price"}
    return {**counts, "will_query": plan.will_query, "covered": plan.covered, **money}


def _as_workbook(output: Path, excel: Path) -> bool:
    """``output`` also as an Excel workbook (numbers kept as text), when it fits in one sheet."""
    from ..command.outputs import AtomicWriter

    source = open_source(output)
    if source.kind == "csv" and output.stat().st_size > 200 * 2**20:  # not worth it, and likely over Excel's rows
        return False
    writer = AtomicWriter(excel)
    writer.open(source.schema)
    try:
        for table in source.tables():
            if writer.rows + table.num_rows > 1_048_575:  # Excel's last row, less the header
                writer.discard()
                return False
            writer.write(_untabbed(table))
        writer.commit()
    except BaseException:
        writer.discard()
        raise
    return True


def _refuse_bomb(path: Path, job: Job) -> None:
    """Refuse a workbook that unpacks to far more than it weighs (a zip bomb: 420 KB planned 4M rows in 105 s and
    1.2 GB); an ordinary xlsx unpacks to 5-15 times its size."""
    try:
        with zipfile.ZipFile(path) as book:
            infos = book.infolist()
    except (zipfile.BadZipFile, OSError):
        return  # not a workbook after all: the plan says so
    packed, unpacked = sum(i.compress_size for i in infos), sum(i.file_size for i in infos)
    if unpacked > _MAX_UNPACKED or (unpacked > 64 * 2**20 and unpacked > 100 * max(packed, 1)):
        raise _Refusal(400, f"工作簿过大 · {job.name} unpacks to {_size(unpacked)} ({unpacked / max(packed, 1):,.0f} "
                            "times its size): refused. Save it as CSV, or split it.")  # fmt: skip


def _sniffed(head: bytes, suffix: str) -> str:
    """The suffix the first bytes of an upload show (a zip is a workbook, ``PAR1`` Parquet, else text)."""
    if head.startswith(b"PK\x03\x04"):
        return ".xlsx"
    if head.startswith(b"PAR1"):
        return ".parquet"
    return suffix if suffix in (".csv", ".tsv") else ".csv"


def _untabbed(table: Any) -> Any:
    """The excel-friendly CSV's cells as they were: a workbook's cells are text (the xlsx writer keeps a formula
    text), so neither the tab before digits nor the quote before ``= + - @`` is needed there."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for i, column in enumerate(table.columns):
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            column = pc.replace_substring_regex(column, r"^\t(\d+)$", r"\1")
            table = table.set_column(i, table.field(i), pc.replace_substring_regex(column, r"^'([=+\-@\t\r])", r"\1"))
    return table


def _display_name(name: str) -> str:
    """A file name fit to show and to offer as a download name: its last part, no control characters."""
    name = re.split(r"[\\/]", name)[-1]
    name = "".join(ch for ch in name if ch.isprintable() and ch not in '<>:"|?*').strip(" .")
    if len(name) > 120:  # shortened before its suffix, which says what the file is
        stem, suffix = os.path.splitext(name)
        name = stem[: 120 - len(suffix[:10])] + suffix[:10]
    return name or "export.csv"


#: What reading a file may say, and how the page says it to a person who does not code: (pattern, words).
_PLAINLY = (
    (r"(?i)parquet magic bytes|parquet file.*(corrupt|invalid)|couldn't deserialize thrift",
     "不是有效的 Parquet 文件 · {name} is not a Parquet file, or it is damaged. Export it again, or as CSV."),
    (r"(?i)not a zip file|badzipfile|bad zip",
     "不是有效的 Excel 工作簿 · {name} is not an Excel workbook (.xlsx), or it is damaged. Open it in Excel and save "
     "it again as .xlsx or as CSV UTF-8."),
    (r"(?i)empty csv file|is empty|cannot infer number of columns",
     "文件是空的 · {name} is empty: it needs a first line with the column names, then a row per customer."),
    (r"(?i)neither utf-8 nor gbk|not valid (gb18030|utf-8)|codec can't decode",
     "文件编码无法识别 · {name} is not text in UTF-8 or GBK (is it really a CSV?). In Excel: Save As, "
     "CSV UTF-8 (逗号分隔)."),
    (r"(?i)line (\d+) has (\d+) fields where the header has (\d+)",
     "第 {0} 行的列数不对 · Line {0} of {name} has {1} values where the header has {2}: a value holding a comma "
     "needs quotes. Save the file from Excel again as CSV, or fix that line."),
)  # fmt: skip


def _unreadable(exc: BaseException, path: Path, job: Job) -> _Refusal:
    """A file the plan could not read, told on the page in plain words (Chinese first), with the user's file name
    (never the server's path), numbers masked; a reason not foreseen keeps its first line."""
    text = str(exc).replace(str(path), job.name).strip()
    for pattern, words in _PLAINLY:
        if found := re.search(pattern, text):
            return _Refusal(400, words.format(*found.groups(), name=job.name))
    told = mask_text(text.splitlines()[0] if text else type(exc).__name__)
    return _Refusal(400, f"无法读取文件 · {job.name} cannot be read as a table: {told}")


def _matches(given: str, token: str) -> bool:
    """Whether ``given`` (from a header, a cookie or the query: any text at all) is the token; as bytes, so
    that no value makes an error, and in constant time."""
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), token.encode("utf-8"))


def _cookie(request: Request) -> str:
    """The cookie's name for this console: with its port, since a browser shares a host's cookies between ports."""
    return f"{_COOKIE}_{request.url.port or (443 if request.url.scheme == 'https' else 80)}"


def _same_origin(request: Request) -> bool:
    """Whether the request's ``Origin`` (else its ``Referer``) is exactly this server: scheme, host and port."""
    claimed = request.headers.get("origin") or request.headers.get("referer") or ""
    try:
        theirs = urlsplit(claimed)
        ports = (theirs.port, request.url.port)
    except ValueError:  # a port that is no port
        return False
    defaults = {"http": 80, "https": 443}
    mine = (request.url.scheme, (request.url.hostname or "").lower(), ports[1] or defaults.get(request.url.scheme))
    return (theirs.scheme, (theirs.hostname or "").lower(), ports[0] or defaults.get(theirs.scheme)) == mine


def _size(n: int) -> str:
    return f"{n / 2**20:,.0f} MB" if n >= 2**20 else f"{n / 2**10:,.0f} KB"


# -- the app ----------------------------------------------------------------------------------------


def create_app(console: Console, token: str) -> Starlette:
    """The web app: the page, its script and style, and the JSON API; every request needs ``token``."""

    def authorized(request: Request) -> bool:
        given = request.headers.get("authorization", "")
        if given.lower().startswith("bearer ") and _matches(given[7:].strip(), token):
            return True
        cookie = request.cookies.get(_cookie(request), "")
        if cookie and _matches(cookie, token):
            if request.method != "GET":  # a cookie rides along with any site's form: this very origin only
                return _same_origin(request)
            return True
        return False

    def job_of(request: Request) -> Job:
        job = console.jobs.get(request.path_params["id"])
        if job is None:
            raise _Refusal(404, "没有这个任务 · no such job (finished jobs are deleted after --keep-days)")
        return job

    async def page(request: Request) -> Response:
        given = request.query_params.get("token")
        if given is not None and _matches(given, token):  # the first visit: keep it in a cookie
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(_cookie(request), token, httponly=True, samesite="strict", path="/")
            return response
        if not authorized(request):
            return HTMLResponse(_UNAUTHORIZED, status_code=401)
        return HTMLResponse((_PAGE / "index.html").read_text(encoding="utf-8"))

    async def login(request: Request) -> Response:
        """The token typed into the page: a cookie for this console, and no URL in the browser's history holds it."""
        length = request.headers.get("content-length", "")
        given = ""
        if length.isdigit() and int(length) <= 4096:
            form = await request.form(max_files=0, max_fields=2)
            given = str(form.get("token") or "").strip()
        if given and _matches(given, token):
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(_cookie(request), token, httponly=True, samesite="strict", path="/")
            return response
        wrong = '<h1>qxt serve</h1><p class="message">令牌不对 · That is not this console\'s token.</p>'
        return HTMLResponse(_UNAUTHORIZED.replace("<h1>qxt serve</h1>", wrong), status_code=401)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ("app.js", "app.css"):
            return Response(status_code=404)
        kind = "text/javascript" if name.endswith(".js") else "text/css"
        return Response((_PAGE / name).read_text(encoding="utf-8"), media_type=f"{kind}; charset=utf-8")

    async def api(request: Request) -> Response:
        if not authorized(request):
            return JSONResponse({"error": _NO_TOKEN}, 401)
        try:
            return await _route(request)
        except _Refusal as exc:
            return JSONResponse({"error": exc.message}, exc.status)
        except (ValueError, UnicodeError) as exc:  # what a request sent, not understood: never a 500
            return JSONResponse({"error": f"请求有误 · the request was not understood: {mask_text(str(exc))}"}, 400)

    async def _route(request: Request) -> Response:
        action, method = request.path_params.get("action", ""), request.method
        if request.url.path == "/api/info":
            return JSONResponse({"simulated": console.simulated, "store": shown(console.checkpoint),
                                 "max_upload": _size(console.max_upload),
                                 "price": None if console.price is None else yuan(console.price)})  # fmt: skip
        if "id" not in request.path_params:
            if method == "POST":
                job = await console.upload(request)
                return JSONResponse({"id": job.id, "plan": job.plan, "column": job.column, "columns": job.columns})
            return JSONResponse({"jobs": [j.public() for j in sorted(console.jobs.values(), key=lambda j: -j.created)]})
        job = job_of(request)
        if method == "GET" and action == "":
            return JSONResponse(job.public())
        if method == "DELETE" and action == "":
            if job.state in _ACTIVE:
                raise _Refusal(409, "任务正在运行 · stop the job before deleting it")
            console.delete(job)
            return JSONResponse({"deleted": job.id})
        if method == "POST" and action == "plan":
            if job.state in _ACTIVE:
                raise _Refusal(409, "任务正在运行 · the job is running; stop it first")
            try:
                body = await request.json()
            except ValueError:
                body = None
            if not isinstance(body, dict) or not all(isinstance(body.get(k, ""), (str, type(None)))
                                                     for k in ("column", "sheet")):  # fmt: skip
                raise _Refusal(400, '请求格式有误 · send the column to plan as JSON, e.g. {"column": "mobile"}')
            await asyncio.to_thread(console.plan, job, str(body.get("column") or ""), body.get("sheet") or None)
            return JSONResponse(job.public())
        if method == "POST" and action == "run":
            await console.run(job)
            return JSONResponse(job.public())
        if method == "POST" and action == "stop":
            console.stop(job)
            return JSONResponse(job.public())
        if method == "GET" and action == "events":
            return StreamingResponse(_events(job), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-store"})  # fmt: skip
        raise _Refusal(404, "没有这个操作 · no such action")

    async def _events(job: Job) -> AsyncIterator[str]:
        while True:
            yield f"data: {json.dumps(job.public(), ensure_ascii=False)}\n\n"
            if job.state not in _ACTIVE:
                return
            await asyncio.sleep(0.5)

    async def download(request: Request) -> Response:
        if not authorized(request):
            return JSONResponse({"error": _NO_TOKEN}, 401)
        try:
            job = job_of(request)
        except _Refusal as exc:
            return JSONResponse({"error": exc.message}, exc.status)
        name = request.path_params["name"]
        if name not in job.files:  # only names the server listed: nothing else on disk is reachable
            return JSONResponse({"error": "没有这个文件 · no such file"}, 404)
        stored = job.stored.get(name, name)  # (jobs made before downloads had names of their own: the same)
        return FileResponse(console.folder(job) / "out" / stored, filename=name,
                            headers={"X-Content-Type-Options": "nosniff",
                                     "Content-Security-Policy": "sandbox"})  # fmt: skip

    async def secure(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'",
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    from starlette.middleware import Middleware
    from starlette.middleware.base import BaseHTTPMiddleware

    routes = [
        Route("/", page),
        Route("/login", login, methods=["POST"]),
        Route("/static/{name}", static),
        Route("/api/info", api),
        Route("/api/jobs", api, methods=["GET", "POST"]),
        Route("/api/jobs/{id}", api, methods=["GET", "DELETE"]),
        Route("/api/jobs/{id}/files/{name}", download),
        Route("/api/jobs/{id}/{action}", api, methods=["GET", "POST"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        sweeper = asyncio.get_running_loop().create_task(console.sweeping())
        yield
        sweeper.cancel()
        await console.close()

    return Starlette(routes=routes, middleware=[Middleware(BaseHTTPMiddleware, dispatch=secure)], lifespan=lifespan)


_NO_TOKEN = "需要令牌 · unauthorized: open the page the server printed and type its token, or send it as a Bearer"
_UNAUTHORIZED = """<!doctype html><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>qxt serve</title><link rel="stylesheet" href="/static/app.css"><h1>qxt serve</h1>
<form method="post" action="/login"><label>令牌 <span class="en">Token</span>
<input type="password" name="token" autocomplete="off" required autofocus></label>
<button type="submit">进入 · Enter</button></form>
<p class="muted">令牌是 qxt serve 启动时打印的 “token: …” 一行 · The token is the line “token: …” qxt serve printed
when it started. Typed here, it is kept in a cookie for this console, and in no address your browser remembers.</p>"""


@contextlib.contextmanager
def _simulated() -> Iterator[tuple[str, dict[str, str]]]:
    from ..simulator import DEMO_APIKEY, Simulator, serve

    with serve(Simulator(latency=0.05)) as url:
        yield url, {**os.environ, "QXT_APIKEY": DEMO_APIKEY}


def serve_forever(*, host: str, port: int, checkpoint: str | None, simulate: bool, base_url: str | None,
                  max_upload: int, keep_days: float, data_dir: Path | None,
                  max_data: int = 10 * 2**30, price: Decimal | None = None) -> int:  # fmt: skip
    """Run the console until interrupted; the first line printed is its URL with the token."""
    import uvicorn

    root = (
        data_dir or Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "qxt-pandas" / "serve"
    )
    token = os.environ.get("QXT_SERVE_TOKEN") or secrets.token_urlsafe(24)
    if not _TOKEN.fullmatch(token):
        print("qxt: QXT_SERVE_TOKEN must be 16 to 256 letters, digits or . _ ~ - (a token a person can type and a "
              "URL carries); unset it for a random one.", file=sys.stderr)  # fmt: skip
        return 2
    with contextlib.ExitStack() as stack:
        env = dict(os.environ)
        if simulate:
            base_url, env = stack.enter_context(_simulated())
        elif not env.get("QXT_APIKEY"):
            print("qxt: serve needs the QXT key in QXT_APIKEY (it stays on this server), or --simulate.",
                  file=sys.stderr)  # fmt: skip
            return 3
        store = checkpoint or str(root / "answers.qxt")
        sock = _bind(host, port)
        shown = f"[{host}]" if ":" in host else host
        # The token on a line of its own, to type into the page: an address holding it stays in browser history.
        print(f"http://{shown}:{sock.getsockname()[1]}/\ntoken: {token}", flush=True)
        if host not in ("127.0.0.1", "localhost", "::1"):
            print(f"qxt: serving on {host}: anyone who can reach it and has the token can spend the balance",
                  file=sys.stderr, flush=True)  # fmt: skip

        async def main() -> None:
            console = Console(root, checkpoint=store, base_url=base_url, env=env, max_upload=max_upload,
                              max_data=max_data, keep_days=keep_days, simulated=simulate, price=price)  # fmt: skip
            # Progress streams (SSE) never end by themselves: 2 s for them, then the runs get their Ctrl-C and
            # up to the rest of the documented 30 s.
            config = uvicorn.Config(create_app(console, token), log_level="warning", access_log=False, log_config=None,
                                    timeout_graceful_shutdown=2)  # fmt: skip
            await uvicorn.Server(config).serve(sockets=[sock])

        def stop(signum: int, frame: object) -> None:  # uvicorn passes a SIGTERM on once it has stopped
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGTERM, stop)
        try:
            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(main())
        finally:
            signal.signal(signal.SIGTERM, previous)
    return 0


def _bind(host: str, port: int) -> Any:
    import socket

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


def parse_size(text: str, name: str = "--max-upload") -> int:
    """``200MB``, ``1.5GB``, ``500k`` or a number of bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]?)i?b?\s*", text.lower())
    if not match:
        raise ValueError(f"{name} {text!r}: use a size such as 200MB or 1GB")
    return int(float(match.group(1)) * {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}[match.group(2)])
