"""Every Python block in README.md and docs/*.md runs as written (issue 20, item 11).

The harness is what a reader's machine would have: the sample export as
``crm_export.csv`` and under ``exports/``, ``QXT_APIKEY`` and ``QXT_BASE_URL``
pointing at the simulator on loopback, and the docs' example database
(``postgresql://etl@db…/qxt``) replaced by the test's own PostgreSQL.
Signatures are ``text`` blocks and doctests ``pycon`` blocks: not run here.
"""

from __future__ import annotations

import ast
import asyncio
import re
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import SAMPLE

from qxt_pandas.simulator import DEMO_APIKEY, Simulator, serve

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
EXAMPLE_DB = re.compile(r"postgresql://etl@db[\w.]*/qxt")


def blocks() -> list[tuple[str, str]]:
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for k, match in enumerate(BLOCK.finditer(doc.read_text(encoding="utf-8"))):
            found.append((f"{doc.name}#{k + 1}", match.group(1)))
    return found


@pytest.mark.parametrize(("where", "code"), blocks(), ids=[w for w, _ in blocks()])
def test_the_block_runs_as_written(where, code, tmp_path, monkeypatch, postgres):
    if "pyspark" in code:
        pytest.importorskip("pyspark")
        monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    shutil.copy(SAMPLE, tmp_path / "crm_export.csv")
    (tmp_path / "exports").mkdir()
    shutil.copy(SAMPLE, tmp_path / "exports" / "a.csv")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QXT_APIKEY", DEMO_APIKEY)
    code = EXAMPLE_DB.sub(postgres, code)
    with serve(Simulator()) as url:
        monkeypatch.setenv("QXT_BASE_URL", url)
        if "forget(" in code:  # the docs forget from stores a check has filled
            crm = pd.read_csv("crm_export.csv", dtype=str)
            for store in ("runs/crm.qxt", postgres):
                crm.qxt.check("mobile", checkpoint=store, progress=False)
        compiled = compile(code, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        namespace: dict = {"__name__": "__doc_example__"}
        result = eval(compiled, namespace)
        if asyncio.iscoroutine(result):
            asyncio.run(result)
    if "pyspark" in code:
        from pyspark.sql import SparkSession

        SparkSession.builder.getOrCreate().stop()
