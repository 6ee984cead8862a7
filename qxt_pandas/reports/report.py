"""The state of a checkpoint, for people: what it answers, and what each run was charged.

:func:`report` reads a checkpoint (its answers, and the receipts of the runs
that filled it) into a :class:`Report`: counts by status, by current carrier
and by province, the share ported, and each run with its balance before and
after. ``charged`` (the balance's drop over the runs, where known) is set
against ``delivered`` (answers received with code 0); a vendor that billed for
answers lost on the way shows up as the difference, run by run. The same
report prints on a terminal (``qxt report``), as JSON (``--json``), as one
self-contained HTML page (``--html``), and in Jupyter (``_repr_html_``).

Example::

    import qxt_pandas
    rep = qxt_pandas.report("runs/crm.qxt")
    rep.by_status          # {'正常': 1890, '空号': 160, ...}
    rep                    # in Jupyter: tables and charts
"""

from __future__ import annotations

import datetime
import html
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import CHARGED_UNREADABLE
from ..money import cost, parse_price, yuan
from ..results import LOCAL_INVALID, NO_STATUS, outcomes
from ..stores import open_existing
from ..stores.tallies import tally
from .charts import FONT_STACK, bars, table_html, top_with_others
from .labels import label, ordered

__all__ = ["Report", "read_checked", "report"]

UNKNOWN_AREA = "未知 unknown"
#: Provinces shown by name; the rest are summed as 其他 others (shares are always of all answered numbers).
TOP_PROVINCES = 10


@dataclass
class Report:
    """What a checkpoint holds and what its runs were charged (see the module's docstring)."""

    checkpoint: str
    service: str
    simulator: bool | None
    stored: int  # answers of any code
    answered: int  # answers with code 0
    by_status: dict[str, int] = field(default_factory=dict)
    by_carrier: dict[str, int] = field(default_factory=dict)
    by_province: dict[str, int] = field(default_factory=dict)
    by_code: dict[str, int] = field(default_factory=dict)
    ported: int = 0
    made: str = field(default_factory=lambda: datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"))
    unreadable: int = 0  # answers charged (code 0) that could not be read; kept, not asked again
    runs: list[dict[str, Any]] = field(default_factory=list)
    title: str = ""  # what the report is of: the store (its location), or a checked file (its name)
    rows: dict[str, int] = field(default_factory=dict)  # a checked file's rows by outcome (labels.py names them)
    price: Decimal | None = None  # yuan per query: charges shown in yuan too

    @property
    def paid(self) -> int:
        """Numbers paid for over the runs, as each run counted them."""
        return sum(run["paid"] for run in self.runs if isinstance(run.get("paid"), int))

    @property
    def delivered(self) -> int:
        """Answers received with code 0 (readable or not), over every run."""
        return sum(run["delivered"] for run in self.runs)

    @property
    def charged(self) -> int | None:
        """The balance's drop summed over the runs (or groups of runs at once) where it is known."""
        known = [bill["charged"] for bill in self.bills if bill["charged"] is not None]
        return sum(known) if known else None

    @property
    def bills(self) -> list[dict[str, Any]]:
        """What was charged and delivered, per run, or per group of runs that shared the balance at once
        (their balance readings overlap, so the drop cannot be split between them honestly)."""
        groups: dict[str, list[dict[str, Any]]] = {}
        for run in self.runs:
            groups.setdefault(run.get("shared") or run.get("run", ""), []).append(run)
        return [{
            "runs": [r.get("run") for r in group], "started": group[0].get("started", "?"),
            "charged": group[0].get("shared_charged") if len(group) > 1 else group[0].get("charged"),
            "delivered": sum(r["delivered"] for r in group),
        } for group in groups.values()]  # fmt: skip

    @property
    def overcharged(self) -> list[dict[str, Any]]:
        """Runs (or groups of runs at once) charged for more answers than they received."""
        return [bill for bill in self.bills if (bill["charged"] or 0) > bill["delivered"]]

    def __repr__(self) -> str:
        return f"<Report {self.checkpoint}: {self.answered:,} numbers answered, {len(self.runs)} run(s)>"

    def warning(self) -> str:
        """The difference between charged and delivered, in words ("" when there is none)."""
        if not self.overcharged:
            return ""
        lost = sum(run["charged"] - run["delivered"] for run in self.overcharged)
        when = "; ".join(
            f"{run.get('started', '?')}: {run['charged'] - run['delivered']:,}" for run in self.overcharged
        )
        return (f"The vendor charged for {lost:,} answer(s) that never arrived (lost to resets or timeouts, then "
                f"asked and paid for again). Here is when: {when}.")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """Everything, for machines (``qxt report --json``)."""
        return {
            "checkpoint": self.checkpoint, "service": self.service, "simulator": self.simulator,
            "stored": self.stored, "answered": self.answered, "by_status": self.by_status,
            "by_carrier": self.by_carrier, "by_province": self.by_province, "by_code": self.by_code,
            "ported": {"count": self.ported, "share": self.ported / self.answered if self.answered else None},
            "unreadable": self.unreadable,
            "runs": self.runs, "delivered": self.delivered, "charged": self.charged,
            "charged_minus_delivered": None if self.charged is None else self.charged - sum(
                bill["delivered"] for bill in self.bills if bill["charged"] is not None),
            "warning": self.warning() or None, "title": self.title or self.checkpoint, "rows": self.rows or None,
            "paid": self.paid, "price": None if self.price is None else str(self.price),
            "cost": None if self.price is None else str(cost(self.paid, self.price)),
        }  # fmt: skip

    def __str__(self) -> str:
        lines = [f"checkpoint {self.checkpoint} ({self.service}{', the simulator' if self.simulator else ''}), "
                 f"{self.made}",
                 f"numbers answered {self.answered:,} (answers stored {self.stored:,}); every count below is of "
                 "numbers, not rows"]  # fmt: skip
        if self.rows:
            rows = sum(self.rows.values()) or 1
            lines[0:0] = [f"report of {self.title}", "rows by outcome: " + ", ".join(
                f"{label(k)} {n:,} ({n / rows:.1%})" for k, n in ordered(self.rows))]  # fmt: skip
        if self.simulator:
            lines.insert(0, "SIMULATED DATA: these answers came from the bundled simulator, not the QXT service.")
        if not self.stored:
            lines.append("no answers yet: run a check with this checkpoint")
        whole = self.answered or 1
        for title, counts in (("by Status", self.by_status), ("by carrier now", self.by_carrier),
                              ("provinces", top_with_others(self.by_province, TOP_PROVINCES))):  # fmt: skip
            lines.append(f"{title}: " + (", ".join(f"{k} {v:,} ({v / whole:.1%})" for k, v in counts.items()) or "-"))
        lines.append(f"ported: {self.ported / self.answered:.1%} of answered" if self.answered else "ported: -")
        if self.unreadable:
            lines.append(f"charged, unreadable: {self.unreadable:,} answers (kept; --retry-unreadable asks again)")
        lines.append(f"runs: {len(self.runs)}; paid {self._money(self.paid)}; delivered {self.delivered:,}; charged "
                     f"{'unknown' if self.charged is None else self._money(self.charged)}")  # fmt: skip
        for run in self.runs:
            paid = self._money(run["paid"]) if isinstance(run.get("paid"), int) else "?"
            lines.append(f"  {run.get('started', '?')}  paid {paid}  balance "
                         f"{_num(run.get('balance_before'))} -> {_num(run.get('balance_after'))}  "
                         f"{run.get('stopped', 'no end recorded (still running, or killed)')}")  # fmt: skip
        if self.warning():
            lines.append(self.warning())
        return "\n".join(lines)

    def _money(self, queries: int | None) -> str:
        """``1,981`` or, with a price, ``1,981 (¥99.05)``."""
        if queries is None:
            return "未知 unknown"
        return f"{queries:,}" + (f" ({yuan(cost(queries, self.price))})" if self.price is not None else "")

    def _repr_html_(self) -> str:
        answered = self.answered or 1
        facts = [("已回答号码 · numbers answered", f"{self.answered:,}"),
                 ("有结果的号码 · numbers with an answer", f"{self.stored:,}"),
                 ("携号转网 · ported", f"{self.ported / answered:.1%}" if self.answered else "-"),
                 ("已扣费但无法读取 · charged, unreadable", f"{self.unreadable:,}"),
                 ("付费查询 · paid queries" + (f"（单价 {yuan(self.price)} a query）" if self.price else ""),
                  self._money(self.paid)),
                 ("余额减少 · charged (balance drop)", self._money(self.charged)),
                 ("送达 · delivered (code 0)", f"{self.delivered:,}")]  # fmt: skip
        runs = [(r.get("started", "?"), self._money(r["paid"]) if isinstance(r.get("paid"), int) else "-",
                 _num(r.get("balance_before")), _num(r.get("balance_after")), r.get("stopped", "no end recorded"))
                for r in self.runs]  # fmt: skip
        warning = f'<p class="qxt-warn"><strong>{html.escape(self.warning())}</strong></p>' if self.warning() else ""
        if self.simulator:
            warning = f'<p class="qxt-sim"><strong>{_SIMULATED}</strong></p>{warning}'
        by_rows = ""
        if self.rows:
            by_rows = bars("各类结果（按行数）· Outcomes (rows of the file)", dict(ordered(self.rows)), label=label,
                           ordered=True)  # fmt: skip
        hint = (
            ""
            if self.price is not None
            else (
                '<p class="qxt-muted">设置单价即可显示金额 · set a price (--price 0.05 or $QXT_PRICE) to see yuan</p>'
            )
        )
        of = "文件 · file" if self.rows else "结果库 · store"
        return (
            f'<div class="qxt-report" style="font-family:{html.escape(FONT_STACK)}">'
            f"<h3>号码检测报告 · QXT report: {html.escape(self.title or self.checkpoint)}</h3>"
            f'<p class="qxt-muted">{of} · {html.escape(self.service)} · {html.escape(self.made)}</p>{warning}'
            f"<p>{_PER_NUMBER[bool(self.rows)]}</p>"
            f"{table_html(facts)}{hint}<div class='qxt-charts'>{by_rows}"
            f"{bars('号码状态 · Status (numbers)', self.by_status, label=label)}"
            f"{bars('当前运营商 · Carrier now (numbers)', self.by_carrier)}"
            f"{bars('省份 · Province (numbers)', self.by_province, top=TOP_PROVINCES)}"
            f"</div><h4>检测记录 · Runs</h4>"
            f"{table_html(runs, header=_RUNS_HEADER)}"
            "</div>"
        )  # fmt: skip

    def to_html(self) -> str:
        """A single self-contained page: no script, no external reference; readable on a phone, printable."""
        simulated = "（模拟数据 simulated data）" if self.simulator else ""
        return (
            '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(self.title or self.checkpoint)} · 号码检测报告 QXT report{simulated}, "
            f"{html.escape(self.made)}</title><style>{_CSS}</style></head>"
            f"<body>{self._repr_html_()}</body></html>"
        )


_SIMULATED = ("模拟数据：结果来自内置模拟服务，不是企讯通的真实数据 · "
              "Simulated data: these answers came from the bundled simulator, not the QXT service.")  # fmt: skip
_PER_NUMBER = {
    False: "下面的数字按号码计（每个号码只算一次），不按行计。 · "
    "Every count below is of numbers (each distinct number once), not rows.",
    True: "除第一张图外，下面的数字按号码计（每个号码只算一次）。 · "
    "Every count below but the first chart is of numbers (each distinct number once), not rows.",
}
_RUNS_HEADER = ("开始 · started", "付费 · paid", "余额（前）· balance before", "（后）· after",
                "结束原因 · why it ended")  # fmt: skip
_CSS = (
    f"body{{font-family:{FONT_STACK};margin:1rem auto;max-width:880px;padding:0 1rem;color:#1d2329;line-height:1.5}}"
    "h3{overflow-wrap:anywhere}.qxt-muted{color:#5b6670}"
    "table{border-collapse:collapse;margin:.5rem 0;display:block;overflow-x:auto}"
    "td,th{border-bottom:1px solid #ddd;padding:.3rem .6rem;text-align:left}"
    ".qxt-warn{color:#a4161a}"
    ".qxt-sim{background:#fff4d6;border:2px solid #e0a800;color:#6b3a00;padding:.6rem .8rem;border-radius:4px}"
    "@media print{body{max-width:none}.qxt-bars{break-inside:avoid}}"
    "@media (max-width:600px){body{padding:0 .5rem}h3{font-size:1.05rem}td,th{padding:.25rem .4rem}}"
)


def _num(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else "-" if value is None else str(value)


def report(
    checkpoint: str | os.PathLike[str],
    *,
    price: Decimal | float | str | None = None,
    checked: str | os.PathLike[str] | None = None,
    title: str | None = None,
    runs: Callable[[dict[str, Any]], bool] | None = None,
) -> Report:
    """The report of ``checkpoint``; a missing, empty or damaged one is a clear :class:`CheckpointError`.

    ``price`` (yuan per query) adds yuan to the charges. ``checked`` (a file ``qxt check`` wrote) makes it the
    report of that file: its rows by outcome and its numbers, not every answer in the store; ``runs`` keeps the
    receipts it accepts (the runs that checked that file), and ``title`` names it (the file's name).

    Example::

        print(qxt_pandas.report("runs/crm.qxt", price=0.05))
    """
    store = open_existing(checkpoint)
    try:
        counts = store.tallies() if checked is None else None  # counted where the answers are
        receipts = _attributed([_with_totals(run) for run in store.runs()])
    finally:
        store.close()
    rows: dict[str, int] = {}
    if counts is None:
        answers, rows = _checked(Path(checked))  # type: ignore[arg-type]
        counts = tally(answers)
    return Report(
        checkpoint=store.location, service=store.service, simulator=store.simulator,
        runs=[run for run in receipts if runs is None or runs(run)], title=title or store.location, rows=rows,
        price=parse_price(price), **_counted(counts),
    )  # fmt: skip


def _counted(counts: pa.Table) -> dict[str, Any]:
    """A report's counts from a tally (tallies.py): numbers stored, answered, by Status, carrier, province, code."""
    groups = counts.to_pylist()
    done = [g for g in groups if g["code"] == 0]
    answered = sum(g["count"] for g in done)

    def by(key: str, among: list[dict[str, Any]], missing: str | None = None) -> dict[str, int]:
        summed: dict[str, int] = {}
        for g in among:
            name = g[key] if g[key] is not None else missing
            if name is not None:
                summed[str(name)] = summed.get(str(name), 0) + g["count"]
        return dict(sorted(summed.items(), key=lambda kv: -kv[1]))

    return {
        "stored": sum(g["count"] for g in groups), "answered": answered,
        "by_status": by("Status", done, NO_STATUS), "by_carrier": by("Now_isp", done),
        "by_province": _with_unknown(by("province", done), answered), "by_code": by("code", groups),
        "ported": sum(g["count"] for g in done if g["Is_MNP"]),
        "unreadable": sum(g["count"] for g in groups if g["code"] == CHARGED_UNREADABLE),
    }  # fmt: skip


#: The result columns a checked file's report reads, and what they are called in the store.
_CHECKED = {"qxt_mobile": "mobile", "qxt_code": "code", "Status": "Status", "Area": "Area", "Is_MNP": "Is_MNP",
            "Now_isp": "Now_isp"}  # fmt: skip


def read_checked(path: Path, columns: Collection[str] = tuple(_CHECKED)) -> pa.Table:
    """``columns`` of a file ``qxt check`` wrote (Parquet, CSV/TSV, with or without --excel-friendly, xlsx), with
    ``qxt_code`` as int16, ``Is_MNP`` as bool and the rest as text."""
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        table = pq.read_table(path, columns=list(columns))
    elif path.suffix.lower() == ".xlsx":
        import pandas as pd

        frame = pd.read_excel(path, usecols=list(columns), dtype=str)
        table = pa.Table.from_pandas(frame, preserve_index=False)
    else:
        import pyarrow.csv as pa_csv

        kinds = {name: pa.string() for name in columns}
        parse = pa_csv.ParseOptions(delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        convert = pa_csv.ConvertOptions(include_columns=list(columns), column_types=kinds, strings_can_be_null=True)
        table = pa_csv.read_csv(path, parse_options=parse, convert_options=convert)
    for name in columns:
        column = table[name]
        if name == "qxt_code" and not pa.types.is_integer(column.type):
            column = pc.cast(pc.utf8_trim_whitespace(column.cast(pa.string())), pa.int16())
        elif name == "Is_MNP" and not pa.types.is_boolean(column.type):
            column = pc.is_in(pc.utf8_lower(column.cast(pa.string())), pa.array(["true", "1"]))
        elif name not in ("qxt_code", "Is_MNP"):
            column = column.cast(pa.string())
        table = table.set_column(table.schema.get_field_index(name), name, column)
    return table


def _checked(path: Path) -> tuple[pa.Table, dict[str, int]]:
    """A checked file's answers, one per number (in the store's column names), and its rows by outcome."""
    table = read_checked(path)
    each = pc.value_counts(outcomes(table["qxt_code"], table["Status"])).to_pylist()
    rows = {e["values"]: e["counts"] for e in each}
    asked = table.filter(pc.and_(pc.is_valid(table["qxt_mobile"]), pc.is_valid(table["qxt_code"])))
    asked = asked.filter(pc.not_equal(asked["qxt_code"], LOCAL_INVALID))
    firsts = asked.group_by("qxt_mobile", use_threads=False).aggregate(
        [(name, "first") for name in _CHECKED if name != "qxt_mobile"]
    )
    firsts = firsts.rename_columns([name.removesuffix("_first") for name in firsts.column_names])
    return firsts.select(list(_CHECKED)).rename_columns(list(_CHECKED.values())), rows


def _with_totals(run: dict[str, Any]) -> dict[str, Any]:
    """A run's receipt with what it was ``charged`` (the balance's drop) and ``delivered`` (code-0 answers,
    readable or not: an unreadable one arrived, and is kept)."""
    before, after = run.get("balance_before"), run.get("balance_after")
    charged = before - after if isinstance(before, int) and isinstance(after, int) else None
    by_code = run.get("by_code", {})
    unreadable = int(by_code.get(str(CHARGED_UNREADABLE), 0))
    return {**run, "delivered": int(by_code.get("0", 0)) + unreadable, "unreadable": unreadable, "charged": charged}


def _attributed(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Charges where the receipts can tell them apart.

    Runs whose times overlap shared the balance: each one's drop holds the others' charges too, so
    they are marked ``shared`` (one id for the group) with the group's drop as ``shared_charged``.
    A run that ended without its record (killed) is charged up to the next run's balance_before.
    """
    spans = [(_moment(r.get("started")), _moment(r.get("ended"))) for r in runs]
    for k, (start, end) in enumerate(spans):  # a killed run was gone by the time the next one started
        if end is None and start is not None:
            later = [s for s, _ in spans[k + 1 :] if s is not None and s > start]
            spans[k] = (start, min(later) - 0.5 if later else float("inf"))
    group = list(range(len(runs)))
    for i in range(len(runs)):
        for j in range(i + 1, len(runs)):
            (a0, a1), (b0, b1) = spans[i], spans[j]
            # times are whole seconds: runs in one second overlap unless the balance says they followed
            followed = runs[i].get("balance_after") == runs[j].get("balance_before") is not None
            if None not in (a0, a1, b0, b1) and a0 <= b1 and b0 <= a1 and not followed:  # type: ignore[operator]
                old, new = group[j], group[i]
                group = [new if g == old else g for g in group]
    for k, run in enumerate(runs):
        together = [runs[m] for m in range(len(runs)) if group[m] == group[k]]
        if len(together) > 1:
            before = [r["balance_before"] for r in together if isinstance(r.get("balance_before"), int)]
            after = [r["balance_after"] for r in together if isinstance(r.get("balance_after"), int)]
            run.update(shared=together[0].get("run"), charged=None,
                       shared_charged=max(before) - min(after) if before and after else None)  # fmt: skip
        elif run.get("charged") is None and isinstance(run.get("balance_before"), int) and k + 1 < len(runs):
            following = runs[k + 1].get("balance_before")
            if isinstance(following, int) and runs[k + 1].get("fee_type") == run.get("fee_type"):
                run.update(charged=run["balance_before"] - following, charged_from="the next run's balance_before")
    return runs


def _moment(text: Any) -> float | None:
    try:
        return datetime.datetime.strptime(str(text), "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except ValueError:
        return None


def _with_unknown(provinces: dict[str, int], answered: int) -> dict[str, int]:
    """Every province, and the answered numbers whose Area was empty: shares are then of all answered."""
    unknown = answered - sum(provinces.values())
    return {**provinces, UNKNOWN_AREA: unknown} if unknown > 0 else provinces
