"""Personal data in Chinese text: detection for the reviewer, redaction for publication.

ARCHITECTURE.md principle 7: published text is redacted (phone, ID card, e-mail, bank
card, addresses, names) with a visible marker, confirmed by a reviewer. This module finds
the candidates (:func:`find_personal_data`) and replaces confirmed ones (:func:`redact`).

How numbers are found, so that none can hide:

* Text is read through a one-character-for-one-character fold: every Unicode decimal
  digit (full-width ``０-９`` included) becomes its ASCII digit and full-width ASCII forms
  (``＠``, ``Ｘ``, ``－``...) become ASCII. Offsets in the fold are offsets in the text.
* A *digit chain* is a maximal run of digits in which consecutive digits are separated
  by at most :data:`MAX_SEPARATOR_RUN` separator characters (spaces of any kind, dashes,
  dots); an ``X`` may close it (even when a word follows: "…002Xiaoming"). Letters, CJK
  or other punctuation end a chain, whatever they are, so "电话13800138000号" and
  "abc13800138000" are both seen.
* Every 11-digit window of a chain's digits that looks like a mainland mobile number
  (``1[3-9]`` + 9 digits) and every 18-character window that is a valid resident ID
  (GB 11643 checksum, a province code, a real birth date) is reported, however long the
  chain. Overlapping windows are merged into one finding. So a mobile or ID number
  cannot survive redaction inside a longer run of digits or split by separators: any
  occurrence left in the output would be a window of some chain in the input.

Lower-risk kinds (landlines, 15-digit old IDs, bank cards, e-mail, addresses, names) use
patterns with context; names are guesses and carry a low confidence. Findings are
candidates for a reviewer, not a verdict.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterable, Iterator
from typing import Final, NamedTuple

PHONE: Final = "phone"
ID_CARD: Final = "id_card"
EMAIL: Final = "email"
BANK_CARD: Final = "bank_card"
ADDRESS: Final = "address"
NAME: Final = "name"

#: Every kind, in priority order: when findings overlap, the earlier kind names the marker,
#: and a finding wholly inside one of an earlier kind is not reported twice.
KINDS: Final[tuple[str, ...]] = (EMAIL, ID_CARD, BANK_CARD, PHONE, ADDRESS, NAME)

#: The visible marker that replaces each kind in published text.
MARKERS: Final[dict[str, str]] = {
    PHONE: "［已隐去：电话号码］",
    ID_CARD: "［已隐去：身份证号］",
    EMAIL: "［已隐去：电子邮箱］",
    BANK_CARD: "［已隐去：银行卡号］",
    ADDRESS: "［已隐去：地址］",
    NAME: "［已隐去：姓名］",
}

#: Characters that may stand between the digits of one number ("138 0013 8000",
#: "0731——8888888", "138.0013.8000"): any whitespace, dashes, dots, underscores.
SEPARATORS: Final = "\\s\\-‐‑‒–—―﹣−_.·・"
#: At most this many separator characters in a row still join two digits into one chain.
MAX_SEPARATOR_RUN: Final = 3


class Finding(NamedTuple):
    kind: str
    start: int
    end: int
    #: The original characters ``text[start:end]``.
    text: str
    #: 0..1: how sure the detector is (numbers with checksums high, names low).
    confidence: float


class Redaction(NamedTuple):
    text: str
    #: The findings that were replaced (sorted by start).
    findings: list[Finding]


# --------------------------------------------------------------------------- folding

_FULLWIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)}
_FULLWIDTH[0x3000] = 0x20  # ideographic space
_NON_ASCII_DIGIT = re.compile(r"(?![0-9])\d")  # \d is every Unicode decimal digit


def fold(text: str) -> str:
    """Same length as ``text``: Unicode decimal digits to ASCII, full-width forms to ASCII."""
    folded = text.translate(_FULLWIDTH)

    def to_ascii(match: re.Match[str]) -> str:
        char = match.group()
        return str(unicodedata.decimal(char))

    return _NON_ASCII_DIGIT.sub(to_ascii, folded)


# --------------------------------------------------------------------------- number checks

_ID_WEIGHTS: Final = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK_CHARS: Final = "10X98765432"
#: First two digits of a resident ID: provinces, Taiwan (71), Hong Kong and Macau (81-83).
_PROVINCES = "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 61 62 63 64 65 71 81 82 83"
PROVINCE_CODES: Final = frozenset(_PROVINCES.split(" "))


def id_check_char(first17: str) -> str:
    """The GB 11643-1999 check character (0-9 or X) for the first 17 digits."""
    total = sum(int(digit) * weight for digit, weight in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK_CHARS[total % 11]


def _plausible_birth_date(year: int, month: int, day: int) -> bool:
    try:
        born = dt.date(year, month, day)
    except ValueError:
        return False
    return dt.date(1900, 1, 1) <= born <= dt.date.today()


def is_valid_id18(number: str) -> bool:
    """18 characters: province code, real birth date, correct check character."""
    number = number.upper()
    if len(number) != 18 or not number[:17].isdigit() or number[:2] not in PROVINCE_CODES:
        return False
    if not _plausible_birth_date(int(number[6:10]), int(number[10:12]), int(number[12:14])):
        return False
    return id_check_char(number[:17]) == number[17]


def is_plausible_id15(number: str) -> bool:
    """Old 15-digit ID (before 1999): province code and a real 19YYMMDD birth date."""
    if len(number) != 15 or not number.isdigit() or number[:2] not in PROVINCE_CODES:
        return False
    return _plausible_birth_date(1900 + int(number[6:8]), int(number[8:10]), int(number[10:12]))


def luhn_ok(number: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(number)):
        digit = int(char)
        if index % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def is_mobile(number: str) -> bool:
    return len(number) == 11 and number.isdigit() and number[0] == "1" and number[1] in "3456789"


# --------------------------------------------------------------------------- digit chains

_CHAIN = re.compile(rf"[0-9](?:[{SEPARATORS}]{{0,{MAX_SEPARATOR_RUN}}}[0-9])*(?:[{SEPARATORS}]?[Xx])?")
_MOBILE_WINDOW = re.compile(r"(?=(1[3-9][0-9]{9}))")
_ID_WINDOW = re.compile(r"(?=([1-8][0-9]{16}[0-9X]))")
_MOBILE_PREFIX = re.compile(r"(?:[(（]?(?:\+|00)86[)）]?|[(（]\+?86[)）])[\s\-]{0,2}$")


class _Chain(NamedTuple):
    digits: str  # 0-9, possibly a final X
    positions: list[int]  # offset in the text of each character of ``digits``


def _chains(folded: str) -> Iterator[_Chain]:
    for match in _CHAIN.finditer(folded):
        digits: list[str] = []
        positions: list[int] = []
        for offset, char in enumerate(match.group(), start=match.start()):
            if char.isdigit() or char in "Xx":
                digits.append(char.upper())
                positions.append(offset)
        yield _Chain("".join(digits), positions)


def _merged_windows(windows: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge overlapping [start, end) windows (sorted by start)."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(windows):
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _maximal_runs(chain: _Chain) -> Iterator[tuple[int, int]]:
    """Index ranges of ``chain.digits`` written without separators between them."""
    start = 0
    for index in range(1, len(chain.positions) + 1):
        if index == len(chain.positions) or chain.positions[index] != chain.positions[index - 1] + 1:
            yield start, index
            start = index


def _card_groupings(runs: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """Spans of consecutive runs grouped the way card numbers are written ("6222 0212 3456 7890 123"):
    groups of four digits then a last group, 16-19 digits in all. Whatever the chain holds before or
    after them ("1、…7890\n2、…" joins the next line's number to the chain), the card is a candidate."""
    for first in range(len(runs)):
        start = runs[first][0]
        for last in range(first, len(runs)):
            total = runs[last][1] - start
            if total > 19:
                break
            if total >= 16:
                yield start, runs[last][1]
            if runs[last][1] - runs[last][0] != 4:
                break


def _number_findings(text: str, folded: str) -> Iterator[Finding]:
    for chain in _chains(folded):
        digits = chain.digits

        def finding(
            kind: str, first: int, last: int, confidence: float, positions: list[int] = chain.positions
        ) -> Finding:
            start, end = positions[first], positions[last - 1] + 1
            return Finding(kind, start, end, text[start:end], confidence)

        ids = [(m.start(), m.start() + 18) for m in _ID_WINDOW.finditer(digits) if is_valid_id18(m.group(1))]
        for first, last in _merged_windows(ids):
            whole = first == 0 and last == len(digits)
            yield finding(ID_CARD, first, last, 0.95 if whole else 0.75)

        mobiles = [(m.start(), m.start() + 11) for m in _MOBILE_WINDOW.finditer(digits)]
        for first, last in _merged_windows(mobiles):
            whole = last == len(digits) and (
                first == 0 or (first == 2 and digits[:2] == "86") or (first == 4 and digits[:4] == "0086")
            )
            if whole and first > 0:
                first = 0  # "86 138..." / "0086-138...": the prefix goes with the number
            found = finding(PHONE, first, last, 0.95 if whole else 0.7)
            start = found.start
            if first == 0:
                prefix = _MOBILE_PREFIX.search(folded, max(0, start - 12), start)
                if prefix:
                    start = prefix.start()
                elif digits[:2] == "86" and start > 0 and folded[start - 1] == "+":
                    start -= 1
            yield found._replace(start=start, text=text[start : found.end])

        runs = list(_maximal_runs(chain))
        candidates = {(0, len(digits)), *runs, *_card_groupings(runs)}
        if digits.endswith("X"):  # the X that may close a chain is an ID's; for any other number it is not a digit
            candidates = {(first, min(last, len(digits) - 1)) for first, last in candidates}
        for first, last in sorted(candidates):
            number = digits[first:last]
            if "X" in number:
                continue
            if is_plausible_id15(number) and not is_mobile(number):
                yield finding(ID_CARD, first, last, 0.6)
            elif (
                16 <= len(number) <= 19
                and number[0] in "3456"
                and len(set(number)) > 2
                and luhn_ok(number)
                and not is_valid_id18(number)
            ):
                yield finding(BANK_CARD, first, last, 0.8 if len(number) in (16, 19) else 0.6)


# --------------------------------------------------------------------------- pattern kinds

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9])[A-Za-z0-9][A-Za-z0-9._%+\-]*@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}"
)

#: Landline: optional +86, area code 0xx / 0xxx (in brackets or not), 7-8 digit local
#: number (in one piece, or two as in "021-6321 1234"), optional extension. Service numbers
#: (12345, 95588) and 400/800 lines are not personal and are left alone.
_LANDLINE = re.compile(
    r"(?<![0-9])(?:(?:\+|00)86[\s\-]?)?"
    r"(?:[(（]0(?:10|2[0-9]|[3-9][0-9]{2})[)）]|0(?:10|2[0-9]|[3-9][0-9]{2}))"
    r"[\s\-‐‑–—－]{0,3}[2-9][0-9]{2,3}[\s\-‐‑–—－]?[0-9]{4}"
    r"(?:\s*(?:转|分机|ext\.?|-|—)\s*[0-9]{1,5})?(?![0-9])"
)

#: A partly masked ID ("430322195601****", "4303221956****123X"): still a birth date.
_MASKED_ID = re.compile(r"(?<![0-9])[1-8][0-9]{5}(?:19|20)[0-9]{2}[0-9]{0,6}\*{2,}[0-9*Xx]{0,6}")

_HAN = "\u4e00-\u9fff"
#: Characters that end a place component. Names of components never contain them, so a
#: run of components splits one way only (no backtracking blow-up on any input).
_SUFFIX_CHARS = "省市区县旗州盟镇乡村组路街道巷弄里苑城府庭园湾寓厦场庄"
_AREA_SUFFIX = "自治区|自治州|省|市|区|县|旗|州|盟|镇|乡|街道|村|组"
_STREET_SUFFIX = "大道|路|街|道|巷|弄|里"
_ESTATE_SUFFIX = "苑|城|府|庭|园|湾|寓|厦|场|庄"
#: Function characters that never sit inside a place name: an address starts after them.
_NOT_IN_PLACE = "的了在是和与及或把被将向为于系住"
_PLACE_NAME = rf"(?:(?![{_SUFFIX_CHARS}{_NOT_IN_PLACE}])[{_HAN}A-Za-z0-9]){{1,10}}"
_HOUSE_NAME = r"[A-Za-z0-9一二三四五六七八九十百零〇甲乙丙丁东西南北\-]{1,6}"
_HOUSE_SUFFIX = "号楼|号院|号(?![线文令码机牌])|栋|幢|座|单元|楼|层|室"
#: A run of house parts ("3栋2单元501室", "G2栋320"): the anchor of an address.
_HOUSE_RUN = re.compile(rf"(?:{_HOUSE_NAME}(?:{_HOUSE_SUFFIX}))+(?:[0-9]{{2,5}}(?![0-9]))?")
#: The places before it ("A市A2区桂花坪街道景蓉华苑", "A3区联丰路米兰春天"), looked for in a
#: bounded window so that long texts cost linear time.
_PLACES_BEFORE = re.compile(
    rf"(?:{_PLACE_NAME}(?:{_AREA_SUFFIX}|{_STREET_SUFFIX}|{_ESTATE_SUFFIX}))+(?:{_PLACE_NAME})?\Z"
)
_PLACES_WINDOW = 60
#: Words that lead into an address but are not part of it (trimmed from its first component).
_ADDRESS_LEAD = re.compile(
    r"坐落在|座落在|坐落于|座落于|位于|居住在|居住于|住在|家住|地址是|地址为|地址|住址|来到|搬到|在|于|到|至|的|是|系"
)
_AREA_OR_STREET = re.compile(rf"(?:{_AREA_SUFFIX}|{_STREET_SUFFIX}|{_ESTATE_SUFFIX})")
_HOUSE_PART = re.compile(rf"{_HOUSE_NAME}(?:{_HOUSE_SUFFIX})")

SINGLE_SURNAMES: Final = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔"
    "钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤常温康施文牛樊"
    "葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉"
    "骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏"
    "宗瞿桂全佟应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻苑迟邝"
)
COMPOUND_SURNAMES: Final = (
    "欧阳",
    "司马",
    "诸葛",
    "上官",
    "东方",
    "皇甫",
    "尉迟",
    "公孙",
    "慕容",
    "令狐",
    "夏侯",
    "长孙",
    "宇文",
    "司徒",
    "端木",
)
_SURNAME = "(?:" + "|".join(COMPOUND_SURNAMES) + f"|[{SINGLE_SURNAMES}])"
#: Characters that rarely end a given name: a third character from this set is not taken.
_NOT_IN_NAME = set(
    "的了在是和与及等想要请向到从对把被说为有也都就还因所以我你他她们这那个位，反映投诉举报咨询问题家住今年现已于已"
)
_NAME_LABEL = re.compile(
    r"(?:(?:我叫|我的名字是|本人叫|名叫|姓名|联系人)[\s:：]{0,2}"
    r"|(?:举报人|投诉人|反映人|申请人|当事人|户主|收件人|经办人|代理人)(?:姓名)?[\s:：]{1,2})"
    rf"(?P<name>{_SURNAME}[{_HAN}]{{1,2}})"
)
#: Surnames that are also everyday characters ("有关同志", "对于老师", "家长和老师"): taken
#: before a title only when no other Chinese character precedes them.
_AMBIGUOUS_SURNAMES = "和于关向房段费万时应全明成单车项连管党宫商沙从仲查麻迟文高常安齐米华路解时师"
_NAME_TITLE = re.compile(rf"(?P<name>{_SURNAME})(?:先生|女士|小姐|老师|师傅|阿姨|大爷|大妈|同志)")
_NAME_ANONYMISED = re.compile(rf"{_SURNAME}(?:某某|某(?![某些种个项天地处部单位公司]))")


def _address_findings(text: str, folded: str) -> Iterator[Finding]:
    for house in _HOUSE_RUN.finditer(folded):
        start, end = house.span()
        places = _PLACES_BEFORE.search(folded[max(0, start - _PLACES_WINDOW) : start])
        if places is not None:
            start -= len(places.group())
        first_suffix = _AREA_OR_STREET.search(folded, start, house.start())
        if first_suffix is not None:
            leads = [lead.end() for lead in _ADDRESS_LEAD.finditer(folded, start, first_suffix.start())]
            if leads:
                start = max(leads)
        houses = len(_HOUSE_PART.findall(folded, house.start(), end))
        if houses < 2 and (first_suffix is None or folded[house.start() - 1] == "第"):
            continue  # "12号", "……第12号": a document number, not an address
        yield Finding(ADDRESS, start, end, text[start:end], 0.85 if houses >= 2 else 0.6)


def _is_han(char: str) -> bool:
    return "\u4e00" <= char <= "\u9fff"


def _name_findings(text: str, folded: str) -> Iterator[Finding]:
    for match in _NAME_LABEL.finditer(folded):
        start, end = match.span("name")
        if end - start == 3 and folded[end - 1] in _NOT_IN_NAME:
            end -= 1
        yield Finding(NAME, start, end, text[start:end], 0.5)
    for match in _NAME_TITLE.finditer(folded):
        start, end = match.span("name")  # "王先生": the surname goes, the title stays
        if folded[start] in _AMBIGUOUS_SURNAMES and start > 0 and _is_han(folded[start - 1]):
            continue
        yield Finding(NAME, start, end, text[start:end], 0.4)
    for match in _NAME_ANONYMISED.finditer(folded):
        yield Finding(NAME, match.start(), match.end(), match.group(), 0.4)


def _pattern_findings(text: str, folded: str) -> Iterator[Finding]:
    for match in _EMAIL.finditer(folded):
        yield Finding(EMAIL, match.start(), match.end(), text[match.start() : match.end()], 0.95)
    for match in _LANDLINE.finditer(folded):
        yield Finding(PHONE, match.start(), match.end(), text[match.start() : match.end()], 0.8)
    for match in _MASKED_ID.finditer(folded):
        if match.group()[:2] in PROVINCE_CODES and 14 <= len(match.group()) <= 18:
            yield Finding(ID_CARD, match.start(), match.end(), text[match.start() : match.end()], 0.5)
    yield from _address_findings(text, folded)
    yield from _name_findings(text, folded)


# --------------------------------------------------------------------------- public API


#: Rounds of looking again at what redaction leaves (see :func:`find_personal_data`); each round
#: covers more of the text, and in practice the second round finds nothing new.
MAX_ROUNDS: Final = 8


def find_personal_data(text: str, kinds: Iterable[str] = KINDS) -> list[Finding]:
    """Candidates for personal data in ``text``, sorted by position.

    A finding lying wholly inside a finding of a higher-priority kind (an e-mail holding a
    phone number, an ID that also passes Luhn) is dropped; partial overlaps are kept both,
    and :func:`redact` merges them.

    What redacting the findings would leave is looked at again, and what it holds is added:
    removing a mobile number from "4000000000000002" + "13000000000" leaves a card number
    that the longer run hid. So the reviewer's proposed text (redacting every finding) is
    one the personal-data check accepts, and ``redact(redact(x)) == redact(x)``."""
    wanted = set(kinds)
    unknown = wanted - set(KINDS)
    if unknown:
        raise ValueError(f"unknown kinds of personal data: {sorted(unknown)}")
    found = _find_once(text, wanted)
    for _round in range(MAX_ROUNDS):
        if not found:
            break
        left, origin = _replaced(text, found)
        extra = []
        for finding in _find_once(left, wanted):
            offsets = origin[finding.start : finding.end]
            if -1 in offsets:
                continue  # it takes in part of a marker: no marker is personal data
            start, end = offsets[0], offsets[-1] + 1
            extra.append(finding._replace(start=start, end=end, text=text[start:end]))
        if not extra:
            break
        found = _without_contained([*found, *extra])
    return found


def _find_once(text: str, wanted: set[str]) -> list[Finding]:
    folded = fold(text)
    return _without_contained(
        [f for f in (*_number_findings(text, folded), *_pattern_findings(text, folded)) if f.kind in wanted]
    )


def _without_contained(raw: list[Finding]) -> list[Finding]:
    priority = {kind: rank for rank, kind in enumerate(KINDS)}
    # Drop a finding when another of the same or a higher priority contains it: in
    # (start, -end, priority) order every container comes first, so the largest end seen
    # so far at each priority level tells (linear time, whatever the number of findings).
    kept: list[Finding] = []
    max_end = [-1] * len(KINDS)
    for candidate in sorted(set(raw), key=lambda f: (f.start, -f.end, priority[f.kind])):
        rank = priority[candidate.kind]
        if max_end[rank] < candidate.end:
            kept.append(candidate)
        for level in range(rank, len(KINDS)):
            max_end[level] = max(max_end[level], candidate.end)
    return sorted(kept, key=lambda f: (f.start, f.end, priority[f.kind]))


def redact(text: str, findings: Iterable[Finding] | None = None, kinds: Iterable[str] = KINDS) -> Redaction:
    """Replace each finding of the given kinds by its visible marker.

    ``findings`` defaults to :func:`find_personal_data` (pass the reviewer-confirmed list
    instead). Overlapping findings merge into one marker, named by the highest-priority
    kind among them; everything outside the findings is kept as it is."""
    wanted = tuple(kinds)
    chosen = find_personal_data(text, wanted) if findings is None else [f for f in findings if f.kind in wanted]
    chosen = sorted(chosen, key=lambda f: (f.start, f.end))
    return Redaction(_replaced(text, chosen)[0], chosen)


def _replaced(text: str, findings: list[Finding]) -> tuple[str, list[int]]:
    """``text`` with each run of overlapping findings replaced by one marker (the highest-priority
    kind's), and for each character of the result its offset in ``text`` (-1 inside a marker)."""
    chosen = sorted(findings, key=lambda f: (f.start, f.end))
    priority = {kind: rank for rank, kind in enumerate(KINDS)}
    parts: list[str] = []
    origin: list[int] = []
    cursor = 0
    index = 0
    while index < len(chosen):
        start, end, kind = chosen[index].start, chosen[index].end, chosen[index].kind
        index += 1
        while index < len(chosen) and chosen[index].start < end:
            end = max(end, chosen[index].end)
            if priority[chosen[index].kind] < priority[kind]:
                kind = chosen[index].kind
            index += 1
        start = max(start, cursor)
        parts.append(text[cursor:start])
        origin.extend(range(cursor, start))
        parts.append(MARKERS[kind])
        origin.extend([-1] * len(MARKERS[kind]))
        cursor = max(cursor, end)
    parts.append(text[cursor:])
    origin.extend(range(cursor, len(text)))
    return "".join(parts), origin
