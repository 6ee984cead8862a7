"""Deterministic answers: the same number always gets the same answer.

A number's hash picks its status, area and porting, so a test can compute
what the simulator will say without asking it. The carrier follows the
number's prefix (MIIT allocation, as of 2024), written here independently
of the library's own prefix table so that the two check each other.
"""

from __future__ import annotations

import hashlib

# code, reason pairs the simulator answers with.
SUCC = (0, "Succ")
PARAM_MISSING = (1, "请求参数缺失,apikey长度不对,查询的手机号码长度不对,查询的手机号码有误")
BAD_KEY = (-1, "apikey信息不匹配(用户信息不正确)")
BAD_LENGTH = (-2, "查询的手机号码长度不对")
BAD_MOBILE = (-3, "请填写正确的手机号码")
NO_INFO = (-4, "未查询到相关信息或填写正确的手机号码再查询")
NO_BALANCE = (-5, "当前余额不足发起本次查询请求,请与供应商联系")
SYSTEM_ERROR = (-8, "系统错误,请稍候再试")
IP_DENIED = (-9, "ip地址鉴权失败")

MOBILE = "中国移动"
UNICOM = "中国联通"
TELECOM = "中国电信"
BROADNET = "中国广电"
VIRTUAL = "其它运营商"

_CARRIER_PREFIXES = {
    MOBILE: "134 135 136 137 138 139 147 148 150 151 152 157 158 159 172 178 182 183 184 187 188 195 197 198",
    UNICOM: "130 131 132 145 146 155 156 166 175 176 185 186 196",
    TELECOM: "133 149 153 173 177 180 181 189 190 191 193 199",
    BROADNET: "192",
    VIRTUAL: "162 165 167 170 171",
}
CARRIER_BY_PREFIX = {p: carrier for carrier, ps in _CARRIER_PREFIXES.items() for p in ps.split()}
BIG_THREE = (MOBILE, UNICOM, TELECOM)

AREAS = (
    "北京-北京",
    "上海-上海",
    "天津-天津",
    "重庆-重庆",
    "广东-广州",
    "广东-深圳",
    "广东-东莞",
    "广东-佛山",
    "湖北-武汉",
    "湖北-宜昌",
    "湖南-长沙",
    "江苏-南京",
    "江苏-苏州",
    "浙江-杭州",
    "浙江-宁波",
    "浙江-温州",
    "四川-成都",
    "四川-绵阳",
    "山东-济南",
    "山东-青岛",
    "河南-郑州",
    "河南-洛阳",
    "河北-石家庄",
    "福建-福州",
    "福建-厦门",
    "安徽-合肥",
    "江西-南昌",
    "陕西-西安",
    "山西-太原",
    "辽宁-沈阳",
    "辽宁-大连",
    "吉林-长春",
    "黑龙江-哈尔滨",
    "云南-昆明",
    "贵州-贵阳",
    "广西-南宁",
    "海南-海口",
    "甘肃-兰州",
    "内蒙古-呼和浩特",
    "新疆-乌鲁木齐",
)

# Cumulative shares of the status mix (per 10,000 numbers).
STATUS_MIX = (
    (200, None),  # -4: nothing found
    (1000, "空号"),
    (1500, "停机"),
    (1600, "沉默号"),  # a status beyond the document's three; the library must keep it verbatim
    (10000, "正常"),
)
PORTED_PER_10000 = 400

#: The interface document's own example (section 1.3) answers exactly as printed there.
DOCUMENTED = {
    "13972565391": {
        "Mobile": "13972565391",
        "Status": "正常",
        "Area": "湖北-宜昌",
        "Is_MNP": "1",
        "Init_isp": MOBILE,
        "Now_isp": TELECOM,
    }
}


def _digest(mobile: str) -> int:
    return int.from_bytes(hashlib.blake2b(mobile.encode(), digest_size=8).digest(), "big")


def validate(mobile: str) -> tuple[int, str] | None:
    """The vendor's complaint about a number's form, or ``None`` when it is well formed."""
    if len(mobile) != 11:
        return BAD_LENGTH
    if not mobile.isascii() or not mobile.isdigit() or mobile[:3] not in CARRIER_BY_PREFIX:
        return BAD_MOBILE
    return None


def answer(mobile: str) -> tuple[tuple[int, str], dict[str, str] | None]:
    """``((code, reason), result)`` for a well-formed number; ``result`` is ``None`` unless code 0."""
    if mobile in DOCUMENTED:
        return SUCC, dict(DOCUMENTED[mobile])
    h = _digest(mobile)
    bucket = h % 10000
    status = next(s for limit, s in STATUS_MIX if bucket < limit)
    if status is None:
        return NO_INFO, None
    init_isp = CARRIER_BY_PREFIX[mobile[:3]]
    now_isp = init_isp
    ported = init_isp in BIG_THREE and (h >> 16) % 10000 < PORTED_PER_10000
    if ported:
        others = [c for c in BIG_THREE if c != init_isp]
        now_isp = others[(h >> 32) % 2]
    return SUCC, {
        "Mobile": mobile,
        "Status": status,
        "Area": AREAS[(h >> 40) % len(AREAS)],
        "Is_MNP": "1" if ported else "0",
        "Init_isp": init_isp,
        "Now_isp": now_isp,
    }
