"""The console for people who do not code (issue 31): Chinese first, money in yuan, a job's own report,
downloads that open in Excel, no silent column guess, upload errors in plain words.

Real ``qxt serve`` processes against the simulator in this process (its ledger is what was paid).
"""

from __future__ import annotations

import io
import re
import zipfile
from decimal import Decimal

import pandas as pd
import pytest
from conftest import SAMPLE, SECRET, qxt
from test_serve import console, rich, run_to_end, upload

from qxt_pandas.command.files import guess_column, open_source
from qxt_pandas.money import cost, parse_price, yuan
from qxt_pandas.pipeline import Plan
from qxt_pandas.reports.labels import OURS, label
from qxt_pandas.simulator import SimulatorTransport, serve

pytest.importorskip("starlette")
CHINESE = re.compile(r"[\u4e00-\u9fff]")


def test_a_price_is_exact_and_a_slip_is_refused():
    assert parse_price("0.05") == Decimal("0.05") and parse_price(0.05) == Decimal("0.05")
    assert parse_price("¥0.035") == Decimal("0.035") and parse_price(None) is None
    assert yuan(cost(2_016, Decimal("0.05"))) == "¥100.80" and yuan(Decimal("0.035")) == "¥0.035"
    assert yuan(cost(3, Decimal("0.035"))) == "¥0.11" and yuan(cost(1_000_000, Decimal("0.05"))) == "¥50,000.00"
    for bad in ("-0.01", "abc", "nan", "500", True):
        with pytest.raises(ValueError, match="yuan"):
            parse_price(bad)
    plan = Plan(3000, 189, 795, 2016, 0, 2016, balance=100_000, fee_type="预付费", price=Decimal("0.05"))
    assert plan.cost == Decimal("100.80") and "¥100.80" in str(plan) and "not charged" in str(plan)
    assert "¥5,000.00" in str(plan) and "¥100.80" in plan._repr_html_()
    assert "--price 0.05" in str(Plan(1, 0, 0, 1, 0, 1))  # no price: counts, and how to set one


def test_the_command_shows_yuan_from_price_or_the_environment(tmp_path, service):
    _, url = service
    dry = qxt("check", SAMPLE, "--column", "mobile", "--dry-run", "--base-url", url, "--price", "0.05")
    assert dry.returncode == 0 and "cost at most" in dry.stdout and "¥100.80" in dry.stdout, dry.stderr
    run = qxt("check", SAMPLE, "--column", "mobile", "--output", tmp_path / "o.csv", "--base-url", url,
              env_extra={"QXT_PRICE": "0.05"})  # fmt: skip
    paid = int(re.search(r"paid queries ([\d,]+)", run.stderr).group(1).replace(",", ""))
    assert run.returncode == 0 and f"({yuan(cost(paid, Decimal('0.05')))} at ¥0.05 a query)" in run.stderr
    made = qxt("report", tmp_path / "o.qxt", "--price", "0.05")
    assert made.returncode == 0 and f"paid {paid:,} ({yuan(cost(paid, Decimal('0.05')))})" in made.stdout
    slip = qxt("check", SAMPLE, "--column", "mobile", "--dry-run", "--base-url", url, "--price", "5000")
    assert slip.returncode == 2 and "ONE query" in slip.stderr


def test_a_file_without_a_phone_column_is_not_guessed_and_cannot_run_until_one_is_chosen(tmp_path):
    names = tmp_path / "names.csv"
    names.write_text("name,city,tel\n张三,北京,\n李四,上海,13800138000\n王五,广州,none\n", encoding="utf-8")
    assert guess_column(open_source(names)) == "tel"  # one in three filled values: enough to guess
    names.write_text("name,city\n张三,北京\n李四,上海\n", encoding="utf-8")
    assert guess_column(open_source(names)) is None
    sim = rich()
    with serve(sim) as url, console(tmp_path, url) as c, c.client() as http:
        made = upload(http, names)
        job = http.get(f"/api/jobs/{made['id']}").json()
        assert job["column"] is None and job["plan"] is None and "没有找到号码列" in job["problem"]
        refused = http.post(f"/api/jobs/{made['id']}/run")
        assert refused.status_code == 409 and "号码列" in refused.json()["error"] and len(sim.ledger) == 0
        chosen = http.post(f"/api/jobs/{made['id']}/plan", json={"column": "city"}).json()
        assert chosen["column"] == "city" and chosen["plan"]["invalid"] == 2 and chosen["problem"] is None
        done = run_to_end(http, made["id"])
        assert done["summary"]["outcomes"] == {"invalid": 2} and len(sim.ledger) == 0


@pytest.mark.parametrize(
    ("name", "content", "said"),
    [
        ("empty.csv", b"", "文件是空的"),
        ("bom.csv", b"\xef\xbb\xbf", "文件是空的"),
        ("broken.xlsx", b"PK\x03\x04not a workbook", "不是有效的 Excel 工作簿"),
        ("data.parquet", b"PAR1 not parquet", "不是有效的 Parquet 文件"),
        ("ragged.csv", b"a,b\n1,2\n1,2,3,4\n", "第 3 行的列数不对"),
        ("noise.csv", bytes(range(256)) * 12, "文件编码无法识别"),
    ],
)
def test_an_unreadable_upload_is_told_in_plain_words(tmp_path, name, content, said):
    with serve(rich()) as url, console(tmp_path, url) as c, c.client() as http:
        answer = http.post("/api/jobs", files={"file": (name, content)})
        told = answer.json()["error"]
        assert answer.status_code == 400 and told.startswith(said) and name in told, told
        assert not re.search(r"(?i)parse error|magic bytes|zip file|--encoding|Traceback", told)
        assert http.get("/api/jobs").json()["jobs"] == []  # nothing of it is kept


def test_money_names_and_downloads_a_person_can_open(tmp_path):
    sim = rich()
    with serve(sim) as url, console(tmp_path, url, "--price", "0.05") as c, c.client() as http:
        assert http.get("/api/info").json()["price"] == "¥0.05"
        made = upload(http, SAMPLE)
        plan = made["plan"]
        assert plan["cost"] == yuan(cost(plan["will_query"], Decimal("0.05"))) == "¥100.80"
        assert plan["balance_yuan"] == "¥5,000.00" and len(sim.ledger) == 0
        done = run_to_end(http, made["id"])
        summary, paid = done["summary"], len(sim.ledger)
        assert summary["paid"] == paid < plan["will_query"]  # "no information" is not charged
        assert summary["spent"] == yuan(cost(paid, Decimal("0.05"))) and done["progress"]["paid"] == paid
        assert done["progress"]["spent"] == summary["spent"]
        # every outcome named Chinese first, the same names as the report's, shares of the rows
        assert set(summary["labels"]) == set(summary["outcomes"]) and {"unknown", "invalid"} <= set(summary["labels"])
        assert all(CHINESE.match(text) for text in summary["labels"].values()), summary["labels"]
        assert summary["order"][0] == "正常" and summary["order"][-2:] == ["unknown", "invalid"]
        assert abs(sum(summary["shares"].values()) - 100) < 0.5 and sum(summary["outcomes"].values()) == 3000
        files = {name: http.get(f"/api/jobs/{made['id']}/files/{name}").content for name in done["files"]}
        assert all(body.startswith(b"\xef\xbb\xbf") for name, body in files.items() if name.endswith(".csv"))
        zipped = zipfile.ZipFile(io.BytesIO(files["crm_export.split.zip"]))
        assert sorted(zipped.namelist()) == sorted(done["parts"].values())  # each also downloadable alone
        assert "crm_export.无效号码.xlsx" in zipped.namelist() and "crm_export.无信息.xlsx" in zipped.namelist()
        rows = 0
        for name in zipped.namelist():
            sheet = pd.read_excel(io.BytesIO(zipped.read(name)), dtype=str)
            assert zipped.read(name) == files[name] and sheet["qxt_mobile"].dropna().str.fullmatch(r"1\d{10}").all()
            rows += len(sheet)
        assert rows == 3000
        page = files["crm_export.report.html"].decode("utf-8")
        assert "<title>crm_export.csv · 号码检测报告" in page and summary["spent"] in page
        for key in summary["outcomes"]:
            assert f">{label(key)}<" in page  # the summary's names, in the job's report
        assert "结果库报告.store-report.html" in files


def test_a_jobs_report_counts_that_job_and_its_charges_not_the_stores(tmp_path):
    sim = rich()
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    pd.DataFrame({"mobile": [f"139{i:08d}" for i in range(400)]}).to_csv(first, index=False)
    pd.DataFrame({"mobile": [f"139{i:08d}" for i in range(300, 420)] * 2}).to_csv(second, index=False)
    with serve(sim) as url, console(tmp_path, url, "--price", "0.1") as c, c.client() as http:
        run_to_end(http, upload(http, first)["id"])
        before = len(sim.ledger)
        made = upload(http, second)
        assert made["plan"]["in_checkpoint"] == 100 and made["plan"]["to_query"] == 20
        done = run_to_end(http, made["id"])
        assert len(sim.ledger) - before == done["summary"]["paid"] == done["summary"]["paid_by_job"]
        page = http.get(f"/api/jobs/{made['id']}/files/second.report.html").text
        answered = int(re.search(r"已回答号码 · numbers answered</td><td>([\d,]+)", page).group(1).replace(",", ""))
        stored = int(re.search(r"有结果的号码 · numbers with an answer</td><td>([\d,]+)", page).group(1))
        assert stored == 120 and answered <= 120  # the job's 120 numbers, not the store's 420
        assert f"付费查询 · paid queries（单价 ¥0.10 a query）</td><td>{done['summary']['paid']:,} (" in page
        assert page.count("<tr><td>20") == 1  # one run: the job's own (the first job's run is not in it)
        whole = http.get(f"/api/jobs/{made['id']}/files/结果库报告.store-report.html").text
        assert re.search(r"有结果的号码 · numbers with an answer</td><td>420<", whole)


def test_a_run_with_nothing_to_pay_says_so_and_pays_nothing(tmp_path):
    sim = rich()
    with serve(sim) as url, console(tmp_path, url) as c, c.client() as http:
        run_to_end(http, upload(http, SAMPLE)["id"])
        paid = len(sim.ledger)
        again = upload(http, SAMPLE)
        assert again["plan"]["will_query"] == 0
        done = run_to_end(http, again["id"])
        assert done["total"] == 0 and done["summary"]["paid"] == 0 and len(sim.ledger) == paid
        assert done["summary"]["rows"] == 3000 and done["parts"]


def test_every_outcome_of_ours_has_a_chinese_name():
    for key in OURS:
        assert CHINESE.match(label(key)) and " · " in label(key)
    assert label("空号") == "空号 · vacant"
    assert label("新状态") == "新状态"  # one we do not know: as the vendor wrote it


def test_plan_in_python_takes_a_price_and_a_bad_one_in_the_environment_is_exit_2(sim, tmp_path):
    frame = pd.DataFrame({"mobile": ["13972565391", "13800138000", "13800138000", "无"]})
    plan = frame.qxt.plan("mobile", apikey=SECRET, base_url="http://127.0.0.1", transport=SimulatorTransport(sim),
                          price="0.05")  # fmt: skip
    assert plan.will_query == 2 and plan.cost == Decimal("0.10") and len(sim.ledger) == 0
    for command in (["check", SAMPLE, "--column", "mobile", "--dry-run", "--simulate"],
                    ["serve", "--simulate", "--port", "0", "--data-dir", tmp_path]):  # fmt: skip
        told = qxt(*command, env_extra={"QXT_PRICE": "abc"}, timeout=60)
        assert told.returncode == 2 and "QXT_PRICE='abc'" in told.stderr and "Traceback" not in told.stderr


def test_a_job_held_back_by_another_run_offers_its_unfinished_rows(tmp_path):
    """Issue 34: a run that gave up waiting for another run's claims writes ``checked.unfinished.csv``, not the
    output (exit 5); the console offered nothing to download."""
    from qxt_pandas.console.app import Console, Job

    jobs = Console(tmp_path / "serve", checkpoint=str(tmp_path / "c.qxt"), base_url=None, env={},
                   max_upload=2**20, keep_days=1)  # fmt: skip
    out = tmp_path / "serve" / "jobs" / "j1"
    out.mkdir(parents=True)
    pd.DataFrame({"mobile": ["13900000001"], "qxt_code": [None]}).to_csv(out / "checked.unfinished.csv", index=False)
    job = Job(id="j1", name="客户.csv", suffix=".csv", created=0.0)
    files, parts, _ = jobs._collect(job, out, out / "checked.csv", paid=0)
    assert files == {"客户.未完成.csv": "checked.unfinished.csv"} and parts == {}
