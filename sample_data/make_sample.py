"""Write sample_data/crm_export.csv: a realistic CRM export, the same every time (seeded).

    python sample_data/make_sample.py [--rows 3000] [--seed 20261128]

Customers with Chinese names and cities, and mobile numbers as people typed
them and spreadsheets mangled them: separators, +86/0086, full-width digits,
trailing ".0", scientific notation, padding; customers sharing a number;
placeholders, landlines, masked and service numbers, two numbers in a cell.
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾萧田董袁潘于蒋蔡"
    "余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯"
    "龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国志红梅玉兰海燕鹏辉玲晶婷欣怡子涵浩然宇轩梓萱诗琪"
CITIES = "深圳 广州 东莞 北京 上海 杭州 成都 武汉 宜昌 南京 苏州 西安 长沙 郑州 重庆 厦门 青岛 昆明 沈阳 合肥".split()
PREFIXES = ("139 138 137 136 135 134 150 151 152 157 158 159 182 183 187 188 198 130 131 132 155 156 166 185 186 "
            "176 133 153 173 177 180 181 189 191 199 192 170 171 162").split()  # fmt: skip
FULL = str.maketrans("0123456789+", "０１２３４５６７８９＋")


def messy(m: str, rng: random.Random) -> str:
    form = rng.choices(
        ["plain", "dash", "space", "+86", "0086", "86", "full", "float", "sci", "pad", "paren"],
        [62, 8, 6, 5, 2, 2, 3, 5, 2, 3, 2],
    )[0]
    return {
        "plain": m,
        "dash": f"{m[:3]}-{m[3:7]}-{m[7:]}",
        "space": f"{m[:3]} {m[3:7]} {m[7:]}",
        "+86": f"+86 {m}",
        "0086": f"0086{m}",
        "86": f"86{m}",
        "full": m.translate(FULL),
        "float": f"{m}.0",
        "sci": f"{m[0]}.{m[1:]}E+10",
        "pad": f" {m}\u00a0",
        "paren": f"({m[:3]}){m[3:]}",
    }[form]


def junk(rng: random.Random) -> str:
    return rng.choice([
        "", "无", "null", "N/A", "-", "暂无", "0755-26012345", "010-88886666", "10086", "95588", "400-810-8888",
        "139****5391", "1.39E+10", "1397256539", "+1 415 555 0100", "13972565391/13800138000", "abc",
    ])  # fmt: skip


def rows(n: int, seed: int):
    rng = random.Random(seed)
    numbers = [rng.choice(PREFIXES) + f"{rng.randrange(10**8):08d}" for _ in range(int(n * 0.8))]
    numbers[:3] = ["13972565391", "13800138000", "18600628374"]  # the vendor document's example and friends
    for i in range(n):
        if rng.random() < 0.06:
            mobile = junk(rng)
        elif rng.random() < 0.15:  # a household or a company sharing a number
            mobile = messy(rng.choice(numbers[: max(1, i // 2)]), rng)
        else:
            mobile = messy(numbers[i % len(numbers)], rng)
        name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice([1, 2])))
        yield {
            "customer_id": f"C{100000 + i}",
            "name": name,
            "city": rng.choice(CITIES),
            "signup_date": f"20{rng.randint(18, 26)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            "mobile": mobile,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=20261128)
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("crm_export.csv"))
    args = parser.parse_args()
    with open(args.output, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["customer_id", "name", "city", "signup_date", "mobile"])
        writer.writeheader()
        writer.writerows(rows(args.rows, args.seed))


if __name__ == "__main__":
    main()
