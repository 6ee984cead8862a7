"""qxt serve's page in a real browser (issue 23): Debian's Chromium driven by Playwright.

Uploads the sample export, runs it, waits for done, downloads the split zip and checks its
counts; takes the page at 1280 and 390 px wide (saved under the test's directory, and into
docs/images/ when QXT_DOCS_SCREENSHOTS is set). Skips, saying why, where no Chromium can be had
(.ci/run installs Debian's ``chromium`` with apt-get when it is missing).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from conftest import SAMPLE
from test_serve import console, rich

from qxt_pandas.simulator import serve

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium on this machine: apt-get install chromium (.ci/run does it when it can)"
)
ROOT = Path(__file__).resolve().parents[2]


def _browser(pw):
    """Debian's Chromium, or the test skips saying why."""
    try:
        return pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    except sync_api.Error as exc:
        pytest.skip(f"Chromium at {CHROMIUM} would not start here: {str(exc).splitlines()[0]}")


def test_the_page_uploads_runs_and_downloads_in_a_real_browser(tmp_path):
    sim = rich(latency=0.002)
    with serve(sim) as url, console(tmp_path, url) as c, sync_api.sync_playwright() as pw:
        browser = _browser(pw)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.goto(f"{c.base}/?token={c.token}")
            assert page.url == f"{c.base}/"  # the token went into a cookie, out of the address bar
            page.set_input_files("#file", str(SAMPLE))
            page.wait_for_selector("#plan-section:not([hidden])")
            plan = page.inner_text("#plan")
            assert "3,000" in plan and page.input_value("#column") == "mobile" and len(sim.ledger) == 0
            page.wait_for_selector("#simulated:not([hidden])")  # simulated answers say so, prominently
            page.screenshot(path=str(tmp_path / "serve-plan-1280.png"), full_page=True)
            page.click("#run")
            page.locator("#state", has_text="完成").wait_for(timeout=120_000)  # (the page's CSP allows no eval)
            with page.expect_download() as caught:
                page.click("text=split.zip")
            zipped = zipfile.ZipFile(io.BytesIO(Path(caught.value.path()).read_bytes()))
            counts = {n: len(pd.read_excel(io.BytesIO(zipped.read(n)), dtype=str)) for n in zipped.namelist()}
            assert sum(counts.values()) == 3000 and "crm_export.正常.xlsx" in counts
            assert "正常" in page.inner_text("#summary") and page.locator("#jobs tbody tr").count() == 1
            page.screenshot(path=str(tmp_path / "serve-1280.png"), full_page=True)
            page.set_viewport_size({"width": 390, "height": 844})
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"the page is {width} px wide at 390: it scrolls sideways on a phone"
            page.screenshot(path=str(tmp_path / "serve-390.png"), full_page=True)
            hostile = tmp_path / "x.csv"
            hostile.write_text("<img src=x onerror=alert(1)>,mobile\n<b>x</b>,13800138000\n", encoding="utf-8")
            page.set_input_files("#file", files=[{"name": "<img src=x onerror=alert(1)>.csv", "mimeType": "text/csv",
                                                  "buffer": hostile.read_bytes()}])  # fmt: skip
            page.locator("#job-name", has_text="onerror=alert(1)").wait_for()  # (its <> dropped from the name)
            assert "<img src=x onerror=alert(1)>" in page.locator("#column option").all_inner_texts()
            assert page.locator("img").count() == 0 and page.locator("b").count() == 0  # text, never markup
            assert errors == []
        finally:
            browser.close()


def test_choosing_a_job_shows_exactly_that_job_and_every_job_is_listed(tmp_path):
    sim = rich(latency=0.002)
    done_csv, planned_csv = tmp_path / "done.csv", tmp_path / "planned.csv"
    done_csv.write_text("mobile,name\n13800000001,a\n")
    planned_csv.write_text("phone,city,note\n13800000002,b,c\n")
    with serve(sim) as url, console(tmp_path, url) as c, sync_api.sync_playwright() as pw:
        browser = _browser(pw)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{c.base}/?token={c.token}")
            page.set_input_files("#file", str(done_csv))
            page.wait_for_selector("#plan-section:not([hidden])")
            page.click("#run")
            page.locator("#state", has_text="完成").wait_for(timeout=60_000)
            page.set_input_files("#file", str(planned_csv))
            page.locator("#job-name", has_text="planned.csv").wait_for()
            page.locator("#jobs tbody tr").nth(1).wait_for()
            page.click("#jobs >> text=done.csv")
            page.locator("#job-name", has_text="done.csv").wait_for()
            assert "完成" in page.inner_text("#state") and page.locator("#files a").count() >= 1
            page.click("#jobs >> text=planned.csv")
            page.locator("#job-name", has_text="planned.csv").wait_for()
            assert page.locator("#progress-section").is_hidden()  # nothing of the done job stays
            assert page.locator("#column option").all_inner_texts() == ["phone", "city", "note"]
            for k in range(23):  # more than a page of jobs: every one is listed, a page at a time
                page.set_input_files("#file", files=[{"name": f"j{k}.csv", "mimeType": "text/csv",
                                                      "buffer": b"mobile\n13800000009\n"}])  # fmt: skip
                page.locator("#job-name", has_text=f"j{k}.csv").wait_for()
            page.locator("#page-text", has_text="25").wait_for()
            page.click("#next")
            page.locator("#page-text", has_text="2 / 2").wait_for()
            assert page.locator("#jobs tbody tr").count() == 5
            page.locator("#jobs tbody tr").last.locator("button.delete").click()
            page.locator("#page-text", has_text="24").wait_for()
        finally:
            browser.close()
    assert len(sim.ledger) == 1


def test_a_token_typed_into_the_page_leaves_no_trace_in_chromiums_history(tmp_path):
    import sqlite3

    sim = rich(latency=0.002)
    profile = tmp_path / "profile"
    with serve(sim) as url, console(tmp_path, url) as c, sync_api.sync_playwright() as pw:
        try:
            context = pw.chromium.launch_persistent_context(
                str(profile), executable_path=CHROMIUM, headless=True,
                args=["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                      "--no-first-run"],
            )  # fmt: skip
        except sync_api.Error as exc:
            pytest.skip(f"Chromium at {CHROMIUM} would not start here: {str(exc).splitlines()[0]}")
        try:
            page = context.new_page()
            page.goto(f"{c.base}/")  # the address the server printed: no token in it
            page.fill("input[name=token]", "not-the-token-0000")
            page.click("button[type=submit]")
            page.locator(".message", has_text="令牌不对").wait_for()
            page.fill("input[name=token]", c.token)
            page.click("button[type=submit]")
            page.wait_for_selector("#drop")  # in: the console's page
            assert page.url == f"{c.base}/"
        finally:
            context.close()  # (Chromium writes its History database as it closes)
    history = sqlite3.connect(f"file:{profile / 'Default' / 'History'}?mode=ro", uri=True)
    urls = [row[0] for row in history.execute("select url from urls")]
    history.close()
    assert urls and not [u for u in urls if c.token in u or "token=" in u]


# Every visible text node's contrast against what is behind it (backgrounds composited up the tree over
# white, opacity included), as WCAG 2 computes it; and each select's shown value. [ratio, text], lowest first.
_CONTRAST = """() => {
  const parse = (c) => { const m = c.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
  const lum = (rgb) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(rgb[0]) + 0.7152 * f(rgb[1]) + 0.0722 * f(rgb[2]); };
  const behind = (el) => { const layers = [];
    for (let e = el; e; e = e.parentElement) { const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; } }
    let out = [255, 255, 255];
    for (const c of layers.reverse()) out = out.map((v, i) => c[i] * c[3] + v * (1 - c[3]));
    return out; };
  const ratio = (el) => { const st = getComputedStyle(el); const fg = parse(st.color); let alpha = fg[3];
    for (let e = el; e; e = e.parentElement) alpha *= Number(getComputedStyle(e).opacity);
    const bg = behind(el); const mixed = fg.slice(0, 3).map((v, i) => v * alpha + bg[i] * (1 - alpha));
    const a = lum(mixed), b = lum(bg); return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05); };
  const seen = (el) => { const box = el.getBoundingClientRect(); return box.width > 0 && box.height > 0 &&
    getComputedStyle(el).visibility !== "hidden"; };
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) { const node = walker.currentNode; const el = node.parentElement;
    if (!node.textContent.trim() || el.closest("select, option") || !seen(el)) continue;
    out.push([ratio(el), node.textContent.trim().slice(0, 60)]); }
  for (const el of document.querySelectorAll("select")) if (seen(el)) out.push([ratio(el), "select " + el.id]);
  return out.sort((x, y) => x[0] - y[0]);
}"""


def _lowest_contrast(page) -> tuple[float, str]:
    return tuple(page.evaluate(_CONTRAST)[0])


def test_text_reads_at_4_5_to_1_in_every_state_and_the_page_works_from_the_keyboard(tmp_path):
    """Issue 31: contrast, keyboard, money, a starting state, a live job list, a report readable on a phone."""
    sim = rich(latency=0.2)
    with serve(sim) as url, console(tmp_path, url, "--price", "0.05") as c, sync_api.sync_playwright() as pw:
        browser = _browser(pw)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{c.base}/")  # the token form
            lowest = {"login": _lowest_contrast(page)}
            page.goto(f"{c.base}/?token={c.token}")
            page.locator("#price", has_text="¥0.05").wait_for()
            lowest["empty"] = _lowest_contrast(page)
            page.set_input_files("#file", files=[{"name": "names.csv", "mimeType": "text/csv",
                                                  "buffer": "name,city\n张三,北京\n".encode()}])  # fmt: skip
            page.locator("#problem", has_text="没有找到号码列").wait_for()
            assert page.is_disabled("#run") and page.input_value("#column") == ""  # nothing chosen for them
            lowest["no column"] = _lowest_contrast(page)
            page.set_input_files("#file", str(SAMPLE))
            page.locator("#job-name", has_text="crm_export.csv").wait_for()
            assert "¥100.80" in page.inner_text("#plan") and "不收费" in page.inner_text("#plan")
            lowest["plan"] = _lowest_contrast(page)
            # every state #progress-text goes through, recorded as it changes
            page.evaluate("""() => { window.said = []; new MutationObserver(() =>
                window.said.push(document.getElementById('progress-text').textContent))
                .observe(document.getElementById('progress-text'), {childList: true, characterData: true,
                subtree: true}); }""")  # fmt: skip
            page.focus("#column")
            page.keyboard.press("Tab")
            assert page.evaluate("document.activeElement.id") == "run"
            page.keyboard.press("Enter")  # Run, from the keyboard
            page.locator("#jobs tbody", has_text="检测中").wait_for()  # the list follows the run, no reload
            lowest["running"] = _lowest_contrast(page)
            page.locator("#state", has_text="完成").wait_for(timeout=120_000)
            said = page.evaluate("window.said")
            assert said[0].startswith("正在启动"), said  # a word from the first moment, never a bare 0 / 2,016
            assert not [s for s in said if s.startswith("0 /")]
            assert "已花费 ¥" in page.inner_text("#spent") and page.locator("#jobs tbody", has_text="完成").count() == 1
            outcomes = page.locator("#summary td.label").all_inner_texts()
            assert outcomes and all(re.match(r"[\u4e00-\u9fff]", text) for text in outcomes), outcomes
            lowest["done"] = _lowest_contrast(page)
            page.screenshot(path=str(tmp_path / "serve-1280.png"), full_page=True)
            page.set_viewport_size({"width": 390, "height": 844})
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            lowest["done, 390 px"] = _lowest_contrast(page)
            page.screenshot(path=str(tmp_path / "serve-390.png"), full_page=True)
            job = page.evaluate("job.id")
            report = page.request.get(f"{c.base}/api/jobs/{job}/files/crm_export.report.html").text()
            page = browser.new_page(viewport={"width": 390, "height": 844})  # (the console's CSP would apply)
            page.set_content(report)
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            cut = page.evaluate("""() => Array.from(document.querySelectorAll('.qxt-bars span'))
                .filter((s) => s.getBoundingClientRect().right > window.innerWidth + 0.5).length""")
            assert cut == 0  # every bar label and figure on screen at 390 px
            lowest["report, 390 px"] = _lowest_contrast(page)
            page.screenshot(path=str(tmp_path / "report-390.png"), full_page=True)
            page.set_viewport_size({"width": 1280, "height": 900})
            page.screenshot(path=str(tmp_path / "report-1280.png"), full_page=True)
        finally:
            browser.close()
    print("lowest contrast:", {state: (round(found[0], 2), found[1]) for state, found in lowest.items()})
    low = {state: found for state, found in lowest.items() if found[0] < 4.5}
    assert not low, f"text below 4.5:1: {low}"
    if os.environ.get("QXT_DOCS_SCREENSHOTS"):
        (ROOT / "docs" / "images").mkdir(exist_ok=True)
        for name in ("serve-1280.png", "serve-390.png", "report-390.png"):
            shutil.copy(tmp_path / name, ROOT / "docs" / "images" / name)
