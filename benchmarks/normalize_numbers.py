"""normalize_mobiles on 1,000,000 mixed rows, beside a per-row Python loop doing the same job.

The rows mimic a CRM export read with ``read_csv(dtype=str)``: most cells
clean, the rest decorated, full-width, with country codes, spreadsheet
floats and scientific notation, placeholders, landlines, masked numbers.
The loop is ``tests/rowwise_reference.py`` (one Python call per cell, then a
DataFrame), the vectorized path is the library's. Best of ``--repeat`` runs.

    python benchmarks/normalize_numbers.py [--rows 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _timing import best
from rowwise_reference import normalize_one

from qxt_pandas import normalize_mobiles
from qxt_pandas.numbers import MOBILE_PREFIXES

FULL = str.maketrans("0123456789+", "０１２３４５６７８９＋")


def messy_rows(n: int, seed: int = 7) -> list[str | None]:
    rng = random.Random(seed)
    prefixes = sorted(MOBILE_PREFIXES)
    forms = [
        (60, lambda m: m),
        (8, lambda m: f"{m[:3]}-{m[3:7]}-{m[7:]}"),
        (6, lambda m: f"{m[:3]} {m[3:7]} {m[7:]}"),
        (4, lambda m: f"+86 {m}"),
        (2, lambda m: f"0086{m}"),
        (3, lambda m: m.translate(FULL)),
        (3, lambda m: f"{m}.0"),
        (1, lambda m: f"{m[0]}.{m[1:]}E+10"),
        (1, lambda m: f"{m[0]}.{m[1:3]}E+10"),
        (2, lambda m: f" {m}\u00a0"),
        (3, lambda m: rng.choice(["", "无", "null", "N/A", "-"])),
        (2, lambda m: None),
        (1, lambda m: f"{m[:3]}****{m[7:]}"),
        (2, lambda m: f"0755-{m[3:11]}"),
        (1, lambda m: rng.choice(["10086", "95588", "400-810-8888"])),
        (1, lambda m: m[:10]),
    ]
    weights = [w for w, _ in forms]
    makers = [f for _, f in forms]
    rows = []
    for _ in range(n):
        mobile = rng.choice(prefixes) + f"{rng.randrange(10**8):08d}"
        rows.append(rng.choices(makers, weights)[0](mobile))
    return rows


def loop(values: pd.Series) -> pd.DataFrame:
    pairs = [normalize_one(v) for v in values.tolist()]
    return pd.DataFrame(pairs, columns=["qxt_mobile", "qxt_error"], index=values.index)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    rows = messy_rows(args.rows)
    as_str = pd.Series(rows, dtype="str")  # what read_csv(dtype=str) gives on pandas 3
    as_object = pd.Series(rows, dtype=object)

    vec = normalize_mobiles(as_str)
    ref = loop(as_str)
    same = (vec.qxt_mobile.fillna("") == ref.qxt_mobile.fillna("")).all() and (
        vec.qxt_error.astype(object).fillna("") == ref.qxt_error.fillna("")
    ).all()
    valid = vec.qxt_mobile.notna().mean()

    t_vec = best(lambda: normalize_mobiles(as_str), args.repeat)
    t_obj = best(lambda: normalize_mobiles(as_object), args.repeat)
    t_loop = best(lambda: loop(as_str), args.repeat)
    print(f"{args.rows:,} rows, {valid:.1%} valid, results identical to the loop: {same}; pandas {pd.__version__}")
    print(f"{'per-row Python loop':>36}: {t_loop:6.3f} s")
    print(f"{'normalize_mobiles (str dtype)':>36}: {t_vec:6.3f} s   ratio to loop {t_vec / t_loop:.2f}")
    print(f"{'normalize_mobiles (object dtype)':>36}: {t_obj:6.3f} s   ratio to loop {t_obj / t_loop:.2f}")


if __name__ == "__main__":
    main()
