"""A store's life (issue 29): forgetting that holds, ages with units, masks that mask, no trace before the checks,
copying answers between stores. Over both stores where it applies; the simulator's ledger is the truth of money.
"""

from __future__ import annotations

import json
import re
import unicodedata

import pandas as pd
import pyarrow as pa
import pytest
from conftest import QXT, SAMPLE, SECRET, qxt, rich, stored
from hypothesis import given
from hypothesis import strategies as st
from test_numbers import formatted, valid_numbers

import qxt_pandas
from qxt_pandas.masked import masked_column
from qxt_pandas.simulator import serve
from qxt_pandas.stores import open_store

NUMBERS = [f"137{i:08d}" for i in range(400)]


def check(url: str, store: str, numbers: list[str] = NUMBERS, **more) -> pd.DataFrame:
    frame = pd.DataFrame({"m": numbers})
    return frame.qxt.check("m", apikey=SECRET, base_url=url, checkpoint=store, progress=False, **more)


# -- item 1: forgetting reads numbers as people keep them ------------------------------------------


def test_forget_reads_one_number_a_line_in_any_spelling(store, tmp_path):
    sim = rich()
    with serve(sim) as url:
        check(url, store)
    n = NUMBERS
    spelled = [f"+86 {n[0][:3]} {n[0][3:7]} {n[0][7:]}", f"{n[1][:3]}-{n[1][3:7]}-{n[1][7:]}",
               f"({n[2][:3]}) {n[2][3:]}", f" {n[3]} ", f"+86{n[4]}", f"{n[5]}.0", f"{n[6][:3]}\u3000{n[6][3:]}", n[7],
               "not a number", "0755-26012345", "13912345678"]  # fmt: skip
    (tmp_path / "gone.txt").write_text("\n".join(spelled) + "\n")
    result = qxt("forget", store, "--numbers", tmp_path / "gone.txt", key=None)
    assert result.returncode == 0, result.stderr
    assert "8 numbers' answers removed" in result.stdout
    assert (
        "2 lines were not a mobile number" in result.stderr and "1 of the numbers given had no answer" in result.stderr
    )
    assert not stored(store) & set(n[:8]) and len(stored(store)) == len(n) - 8


def test_forget_guesses_the_column_of_a_csv_and_says_when_nothing_was_a_number(tmp_path):
    store = str(tmp_path / "c.qxt")
    sim = rich()
    with serve(sim) as url:
        check(url, store)
    (tmp_path / "gone.csv").write_text("id,mobile\n" + "".join(f"{i},{m}\n" for i, m in enumerate(NUMBERS[:5])))
    guessed = qxt("forget", store, "--numbers", tmp_path / "gone.csv", key=None)
    assert guessed.returncode == 0 and "5 numbers' answers removed" in guessed.stdout
    (tmp_path / "names.txt").write_text("Zhang San\nLi Si\n")
    nothing = qxt("forget", store, "--numbers", tmp_path / "names.txt", key=None)
    assert nothing.returncode == 2 and "no line of" in nothing.stderr and "nothing was forgotten" in nothing.stderr
    one = qxt_pandas.forget(store, numbers=[NUMBERS[5], "x"])
    assert one == 1 and str(one) == "1 number's answers" and one.not_numbers == 1


# -- item 4: ages carry units ------------------------------------------------------------------------


def test_an_age_without_a_unit_is_refused_before_anything_is_removed_or_paid(tmp_path):
    sim = rich()
    store = str(tmp_path / "c.qxt")
    with serve(sim) as url:
        check(url, store)
        (tmp_path / "in.csv").write_text("m\n" + "\n".join(NUMBERS) + "\n")
        refused = qxt("check", tmp_path / "in.csv", "--column", "m", "--output", tmp_path / "o.csv", "--checkpoint",
                      store, "--base-url", url, "--retention", "1")  # fmt: skip
        assert refused.returncode == 2 and "'1d' for days" in refused.stderr
        kept = qxt("check", tmp_path / "in.csv", "--column", "m", "--output", tmp_path / "o.csv", "--checkpoint",
                   store, "--base-url", url, "--retention", "30d")  # fmt: skip
        assert kept.returncode == 0
    assert len(sim.ledger) == len(set(sim.ledger.paid(SECRET))) and sim.ledger.paid_twice() == {}
    everything = qxt("forget", store, "--older-than", "0s", key=None)
    assert everything.returncode == 2 and "--all" in everything.stderr and len(stored(store)) == len(NUMBERS)
    assert qxt("forget", store, "--older-than", "90", key=None).returncode == 2


def test_retention_says_how_many_answers_it_removed(tmp_path):
    import time

    sim = rich()
    store = str(tmp_path / "c.qxt")
    with serve(sim) as url:
        check(url, store, NUMBERS[:30])
        cutoff = time.time()
        (tmp_path / "in.csv").write_text("m\n" + "\n".join(NUMBERS[30:40]) + "\n")
        while time.time() <= cutoff + 1.05:  # the answers above are more than a second old (a clock, not a wait)
            time.sleep(0.05)
        result = qxt("check", tmp_path / "in.csv", "--column", "m", "--output", tmp_path / "o.csv", "--checkpoint",
                     store, "--base-url", url, "--retention", "1s")  # fmt: skip
    assert result.returncode == 0 and "retention: 30 old answers removed" in result.stderr


# -- item 5: --mask-output masks by value ---------------------------------------------------------------

_FULL = str.maketrans("０１２３４５６７８９", "0123456789")


def survivors(cells: list[object]) -> list[str]:
    """Cells that still show a whole valid number: as a whole, or anywhere inside, separators dropped."""
    found = []
    whole = qxt_pandas.normalize_mobiles(pd.Series(cells, dtype=object))["qxt_mobile"]
    for cell, number in zip(cells, whole, strict=True):
        text = unicodedata.normalize("NFKC", str(cell)).translate(_FULL) if cell is not None else ""
        joined = re.sub(r"(?<=\d)[\s\-.—\u200b]+(?=\d)", "", text)  # separators between digits dropped
        runs = re.findall(r"\d+", joined)
        if pd.notna(number) or any(re.fullmatch(r"(?:0086|86)?1[3-9]\d{9}", run) for run in runs):
            found.append(str(cell))
    return found


def test_mask_output_leaves_no_valid_number_in_any_cell_of_the_sample(tmp_path):
    sim = rich()
    raw = pd.read_csv(SAMPLE, dtype=str, keep_default_na=False)
    before = survivors(raw["mobile"].tolist())
    with serve(sim) as url:
        result = qxt("check", SAMPLE, "--column", "mobile", "--output", tmp_path / "out.csv", "--split",
                     "--mask-output", "--base-url", url)  # fmt: skip
    assert result.returncode in (0, 5), result.stderr
    out = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    assert len(before) > 700  # the sample's own (issue 29 counted 727 left whole by the old mask)
    assert survivors(out["mobile"].tolist()) == [] and survivors(out["qxt_mobile"].tolist()) == []
    for part in tmp_path.glob("out.*.csv"):
        split = pd.read_csv(part, dtype=str, keep_default_na=False)
        assert survivors(split["mobile"].tolist()) == [], part.name


@given(valid_numbers.flatmap(lambda n: st.tuples(st.just(n), formatted(n), formatted(n), st.sampled_from([
    " / ", "/", ", ", "；", " and ", "\n", "电话"]))))  # fmt: skip
def test_no_spelling_normalize_accepts_survives_masking_alone_or_two_in_a_cell(case):
    number, one, other, between = case
    cells = [one, f"{one}{between}{other}" if isinstance(one, str) and isinstance(other, str) else one]
    masked = masked_column(pa.array([str(c) for c in cells])).to_pylist()
    assert survivors(masked) == []
    assert masked[0] == number[:3] + "****" + number[7:]


def test_the_accessor_masks_the_column_and_qxt_mobile_too():
    sim = rich()
    frame = pd.DataFrame({"m": ["+86 137 0000 0001", "a 13700000002/13700000003", 13700000004, None]}, dtype=object)
    with serve(sim) as url:
        out = frame.qxt.check("m", apikey=SECRET, base_url=url, progress=False, mask_output=True)
    assert out["m"].tolist()[:3] == ["137****0001", "a 137****0002/137****0003", "137****0004"]
    assert survivors(out["m"].dropna().tolist()) == [] and survivors(out["qxt_mobile"].dropna().tolist()) == []


# -- item 6: nothing is written to a store before everything that can fail is checked ---------------


def test_a_plan_or_a_check_without_a_key_leaves_no_trace(store, tmp_path, monkeypatch):
    monkeypatch.delenv("QXT_APIKEY", raising=False)
    frame = pd.DataFrame({"m": NUMBERS[:5]})
    with pytest.raises(qxt_pandas.MissingApiKeyError):
        frame.qxt.plan("m", checkpoint=store)
    with pytest.raises(qxt_pandas.MissingApiKeyError):
        frame.qxt.check("m", checkpoint=store, progress=False)
    if store.startswith("postgres"):
        import psycopg

        base, schema = store.split("&schema=")
        with psycopg.connect(base) as conn:
            found = conn.execute("select 1 from information_schema.schemata where schema_name = %s", (schema,))
            assert found.fetchone() is None
    else:
        assert not (tmp_path / "c.qxt").exists()
    sim = rich()  # and the same store then serves the simulator: it was bound to nothing
    with serve(sim) as url:
        assert check(url, store, NUMBERS[:5])["qxt_code"].notna().all()


# -- item 7: copying answers between stores ----------------------------------------------------------


def test_copy_a_directory_to_postgres_and_back_then_a_check_there_pays_nothing(postgres, tmp_path):
    sim = rich()
    directory = str(tmp_path / "laptop.qxt")
    with serve(sim) as url:
        check(url, directory)
        paid = len(sim.ledger)
        first = qxt("copy", directory, postgres, key=None)
        assert first.returncode == 0 and f"{len(NUMBERS)} answers copied" in first.stdout, first.stderr
        again = qxt_pandas.copy_answers(directory, postgres)
        assert (again.answers, again.already, again.receipts) == (0, len(NUMBERS), 0)  # adds nothing
        back = qxt_pandas.copy_answers(postgres, str(tmp_path / "back.qxt"))
        assert back.answers == len(NUMBERS) and back.receipts == 1
        on_postgres = check(url, postgres)
        on_the_copy = check(url, str(tmp_path / "back.qxt"))
    assert len(sim.ledger) == paid  # neither check paid for anything
    assert on_postgres["qxt_code"].notna().all() and on_the_copy["qxt_code"].notna().all()
    assert qxt_pandas.report(postgres).runs[0]["paid"] == qxt_pandas.report(directory).runs[0]["paid"]


def test_copy_refuses_another_kind_of_service_before_writing_anything(tmp_path):
    sim = rich()
    with serve(sim) as url:
        check(url, str(tmp_path / "simulated.qxt"))
    real = open_store(tmp_path / "real.qxt", service="127.0.0.1")
    real.bind(simulator=False)  # a store of the vendor's answers
    with pytest.raises(qxt_pandas.CheckpointError, match="never cross"):
        qxt_pandas.copy_answers(tmp_path / "simulated.qxt", tmp_path / "real.qxt")
    assert real.answers().num_rows == 0 and not list((tmp_path / "real.qxt").glob("journal-*"))
    with pytest.raises(qxt_pandas.CheckpointError, match="one store"):
        qxt_pandas.copy_answers(tmp_path / "simulated.qxt", tmp_path / "simulated.qxt")


def test_copy_hashes_plain_into_keyed_and_keyed_needs_its_own_key(tmp_path):
    key, other = "k" * 32, "o" * 32
    sim = rich()
    with serve(sim) as url:
        check(url, str(tmp_path / "plain.qxt"))
        qxt_pandas.copy_answers(tmp_path / "plain.qxt", tmp_path / "keyed.qxt", store_key=key)
        keyed_bytes = b"".join(p.read_bytes() for p in (tmp_path / "keyed.qxt").iterdir() if p.is_file())
        assert NUMBERS[0].encode() not in keyed_bytes  # hashed on the way
        with pytest.raises(qxt_pandas.CheckpointError, match="needs its own store key"):
            qxt_pandas.copy_answers(tmp_path / "keyed.qxt", tmp_path / "clear.qxt")
        with pytest.raises(qxt_pandas.CheckpointError, match="not the one"):
            qxt_pandas.copy_answers(tmp_path / "keyed.qxt", tmp_path / "clear.qxt", store_key=other)
        assert qxt_pandas.copy_answers(tmp_path / "keyed.qxt", tmp_path / "keyed2.qxt", store_key=key).answers == 400
        paid = len(sim.ledger)
        done = check(url, str(tmp_path / "keyed2.qxt"), store_key=key)
    assert len(sim.ledger) == paid and done["qxt_code"].notna().all()


# -- items 2 and 3: forgetting holds against live runs, and covers spill files -----------------------


def test_forget_while_a_run_in_another_process_asks_those_numbers_leaves_none_of_them(store, tmp_path):
    import os
    import subprocess

    from conftest import wait_for

    sim = rich(latency=0.05)
    numbers = [f"136{i:08d}" for i in range(1500)]
    (tmp_path / "in.csv").write_text("m\n" + "\n".join(numbers) + "\n")
    (tmp_path / "gone.txt").write_text("\n".join(numbers) + "\n")
    env = {**os.environ, "QXT_APIKEY": SECRET}
    with serve(sim) as url:
        run = subprocess.Popen([*QXT, "check", tmp_path / "in.csv", "--column", "m",
                                "--output", tmp_path / "out.csv", "--checkpoint", store, "--base-url", url,
                                "--concurrency", "8", "--progress", "off"], env=env)  # fmt: skip
        try:
            assert wait_for(lambda: len(sim.ledger) >= 200, timeout=60)
            forgot = qxt("forget", store, "--numbers", tmp_path / "gone.txt", "--wait", "2m", key=None, timeout=180)
        finally:
            assert run.wait(timeout=120) == 0
        if forgot.returncode != 0:  # it could not promise: it said so; once the run has ended, again
            assert forgot.returncode == 1 and "still going" in forgot.stderr
            assert qxt("forget", store, "--numbers", tmp_path / "gone.txt", key=None).returncode == 0
    assert not stored(store) & set(numbers)  # none of them came back once the run ended


def test_forget_and_retention_cover_answers_spilled_on_this_machine(tmp_path, monkeypatch):
    from qxt_pandas.stores import _spill, journal
    from qxt_pandas.stores.directory.store import Answer, Checkpoint

    monkeypatch.setenv("QXT_SPILL_DIR", str(tmp_path / "spill"))
    store = Checkpoint(tmp_path / "c.qxt", service="127.0.0.1")
    store.create()
    old, new = Answer(NUMBERS[0], 0, "正常", checked_at=1.0), Answer(NUMBERS[1], 0, "正常", checked_at=2e9)
    path = _spill.spill(store.identity, "run-1", [old, new, Answer(NUMBERS[2], 0, "空号", checked_at=2e9)])
    assert journal.prune_spilled(store.identity, [NUMBERS[2]], cutoff=10.0) == 2  # one by number, one by age
    assert path.stat().st_mode & 0o777 == 0o600
    assert [json.loads(line)["mobile"] for line in path.read_text().splitlines()] == [NUMBERS[1]]
    assert qxt_pandas.forget(tmp_path / "c.qxt", numbers=[NUMBERS[1]]) == 1  # opening moved it in; then forgotten
    assert not path.exists() and stored(str(tmp_path / "c.qxt")) == set()
