"""Redaction as properties (issue 9): whatever surrounds a phone number, ID number, e-mail or bank card,
the published text keeps none of it, and redacting twice changes nothing more.

The function under test is the one every public text goes through: ``services.text.pii.redact`` (its
``.text``), used by consult for the published question and answer (``consult.workflow``: the reviewer's
proposal, imported answers, ``without_submitter`` for the press office) and by the press briefing.

A number is generated valid (mobile ``1[3-9]`` + 9 digits, a landline with its area code, an 18-character
resident ID with its GB 11643 check character, a bank card passing Luhn), written as people write it
(spaces, dashes, ``+86``, full-width digits), and put between two generated texts of CJK, letters, digits,
full-width punctuation and line breaks. Digits touching the number would make it another number, so each
surrounding text ends (before it) and starts (after it) with something that is not a digit. "Contains
none of it" compares digit sequences: the output read with every digit folded to ASCII and every run of
separators between two digits removed, as a reader copying a number out would read it.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from services.text.pii import MARKERS, redact

PROPERTY = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
DIGITS = "0123456789"

# -- independent helpers (not services.text.pii's own) ------------------------------------------------


def id_check_character(first17: str) -> str:
    weights = [2 ** (17 - i) % 11 for i in range(17)]
    return "10X98765432"[sum(int(d) * w for d, w in zip(first17, weights, strict=True)) % 11]


def luhn_check_digit(partial: str) -> str:
    """The digit that makes ``partial + digit`` pass Luhn."""
    total = 0
    for index, char in enumerate(reversed(partial)):
        digit = int(char)
        if index % 2 == 0:  # doubled: these are odd positions once the check digit is appended
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return str(-total % 10)


def to_fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


_SEPARATOR_RUN = re.compile(r"(?<=[0-9])[\s\-‐‑‒–—―﹣−_.·・]+(?=[0-9X])")


def digit_view(text: str) -> str:
    """Digits of any script as ASCII, full-width forms as ASCII, X upper-cased, separators between digits gone."""
    folded = "".join(
        str(unicodedata.decimal(c)) if unicodedata.decimal(c, None) is not None else unicodedata.normalize("NFKC", c)
        for c in text
    )
    return _SEPARATOR_RUN.sub("", folded.replace("x", "X"))


def redacted(text: str) -> str:
    return redact(text).text


# -- surrounding text ----------------------------------------------------------------------------------

CJK = "我的电话号码是请联系身份证银行卡邮箱地址反映问题咨询办理谢谢您好手机座机转分机号码为如下"
FULLWIDTH_PUNCTUATION = "，。：；！？、（）【】《》“”‘’…—～·＃＠％"
ASCII_PUNCTUATION = " ,.:;!?()[]-_/#@%+*"
LINE_BREAKS = ["\n", "\r\n", "\u2028"]
filler = st.lists(
    st.sampled_from(list(CJK + FULLWIDTH_PUNCTUATION + ASCII_PUNCTUATION + DIGITS + "abcXYZ") + LINE_BREAKS),
    max_size=25,
).map("".join)


def _not_a_digit(char: str) -> bool:
    return unicodedata.decimal(char, None) is None


@st.composite
def surroundings(draw: st.DrawFn, edge: st.SearchStrategy[str]) -> tuple[str, str]:
    """(text before, text after): arbitrary inside, ending / starting with a character drawn from ``edge``."""
    before = draw(filler) + draw(edge)
    after = draw(edge) + draw(filler)
    return before, after


# Whatever is not a digit: CJK, letters, any punctuation, full-width punctuation, spaces and line breaks.
NOT_A_DIGIT = st.sampled_from(list(CJK + FULLWIDTH_PUNCTUATION + ASCII_PUNCTUATION + "abcXYZ") + LINE_BREAKS)


# -- the numbers, and how people write them ------------------------------------------------------------


@st.composite
def mobiles(draw: st.DrawFn) -> tuple[str, str]:
    """(the 11 digits, as written)."""
    number = "1" + draw(st.sampled_from("3456789")) + draw(st.text(DIGITS, min_size=9, max_size=9))
    separator = draw(st.sampled_from(["", " ", "-", "\u3000", " - "]))
    written = separator.join((number[:3], number[3:7], number[7:])) if separator else number
    prefix = draw(st.sampled_from(["", "+86", "+86 ", "+86-", "86", "0086", "0086-", "(+86)", "（+86）"]))
    text = prefix + written
    return number, to_fullwidth(text) if draw(st.booleans()) else text


@st.composite
def landlines(draw: st.DrawFn) -> tuple[str, str, str]:
    """(area code + local number, the local number, as written)."""
    area = draw(st.sampled_from(["010", "020", "021", "022", "023", "024", "025", "027", "028", "029"])
                | st.builds(lambda a, b: f"0{a}{b}", st.sampled_from("3456789"), st.text(DIGITS, min_size=2,
                                                                                           max_size=2)))
    local = draw(st.sampled_from("23456789")) + draw(st.text(DIGITS, min_size=6, max_size=7))
    if len(local) == 8 and draw(st.booleans()):  # Shanghai and Beijing write 8 digits in two groups
        written_local = local[:4] + draw(st.sampled_from([" ", "-"])) + local[4:]
    else:
        written_local = local
    style = draw(st.sampled_from(["{a}-{l}", "{a}{l}", "{a} {l}", "({a}){l}", "（{a}）{l}", "{a}—{l}", "{a}－{l}"]))
    text = style.format(a=area, l=written_local)
    text = draw(st.sampled_from(["", "+86 ", "+86-", "0086-"])) + text
    text += draw(st.sampled_from(["", "", "转123", "-8021", " 分机 66"]))
    return area + local, local, to_fullwidth(text) if draw(st.booleans()) else text


PROVINCES = ["11", "12", "31", "32", "33", "37", "42", "43", "44", "50", "51", "61", "65", "71", "81", "82"]


@st.composite
def id_numbers(draw: st.DrawFn) -> tuple[str, str]:
    """(the 18 characters, as written)."""
    born = draw(st.dates(dt.date(1900, 1, 1), dt.date(2024, 12, 31)))
    first17 = (draw(st.sampled_from(PROVINCES)) + draw(st.text(DIGITS, min_size=4, max_size=4))
               + born.strftime("%Y%m%d") + draw(st.text(DIGITS, min_size=3, max_size=3)))
    number = first17 + id_check_character(first17)
    written = number.lower() if number.endswith("X") and draw(st.booleans()) else number
    if draw(st.booleans()):
        written = draw(st.sampled_from([" ", "-"])).join((written[:6], written[6:14], written[14:]))
    return number, to_fullwidth(written) if draw(st.booleans()) else written


@st.composite
def emails(draw: st.DrawFn) -> tuple[str, str]:
    """(the address, as written)."""
    local = draw(st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=3)) + draw(
        st.text("abcdefghijklmnopqrstuvwxyz0123456789._+-", max_size=10)) + draw(st.text(
            "abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=2))
    domain = draw(st.sampled_from(["qq.com", "163.com", "126.com", "gmail.com", "mail.example.gov.cn", "sina.cn",
                                   "foxmail.com", "example-mail.org"]))
    address = f"{local}@{domain}"
    written = address.upper() if draw(st.booleans()) else address
    return address, to_fullwidth(written) if draw(st.booleans()) else written


@st.composite
def bank_cards(draw: st.DrawFn) -> tuple[str, str]:
    """(the digits, as written): UnionPay 62 (16-19 digits), Visa 4 and Mastercard 5 (16), passing Luhn."""
    prefix = draw(st.sampled_from(["62", "4", "5"]))
    length = draw(st.integers(16, 19)) if prefix == "62" else 16
    partial = prefix + draw(st.text(DIGITS, min_size=length - len(prefix) - 1, max_size=length - len(prefix) - 1))
    number = partial + luhn_check_digit(partial)
    assume(len(set(number)) > 2)  # "6666 6666 6666 6666" is a placeholder, not a card
    separator = draw(st.sampled_from(["", " ", "-"]))
    written = separator.join(number[i: i + 4] for i in range(0, len(number), 4)) if separator else number
    return number, to_fullwidth(written) if draw(st.booleans()) else written


def test_the_independent_checks_agree_with_known_numbers() -> None:
    assert id_check_character("11010519491231002") == "X"  # GB 11643's own example
    assert luhn_check_digit("7992739871") == "3"  # the textbook Luhn example
    assert digit_view("１３８ ００１３-8000 与 x") == "13800138000 与 X"


# -- no number survives --------------------------------------------------------------------------------


@PROPERTY
@given(number=mobiles(), around=surroundings(NOT_A_DIGIT))
def test_no_mobile_number_survives(number: tuple[str, str], around: tuple[str, str]) -> None:
    digits, written = number
    text = around[0] + written + around[1]
    assert digits not in digit_view(redacted(text)), text


@PROPERTY
@given(number=landlines(), around=surroundings(NOT_A_DIGIT))
@example(number=("01020000000", "20000000", "010-2000 0000"), around=("我", "我"))  # found by this test, fixed
def test_no_landline_survives(number: tuple[str, str, str], around: tuple[str, str]) -> None:
    digits, local, written = number
    text = around[0] + written + around[1]
    view = digit_view(redacted(text))
    assert digits not in view, text
    assert local not in view, text  # not even without its area code


@PROPERTY
@given(number=id_numbers(), around=surroundings(NOT_A_DIGIT))
@example(number=("65000020080802138X", "65000020080802138X"), around=("我", "a"))  # found by this file, fixed
def test_no_id_number_survives(number: tuple[str, str], around: tuple[str, str]) -> None:
    characters, written = number
    text = around[0] + written + around[1]
    view = digit_view(redacted(text))
    assert characters not in view, text
    assert characters[:17] not in view, text  # nor the part that holds the birth date and serial


@PROPERTY
@given(number=emails(), around=surroundings(NOT_A_DIGIT))
@example(number=("00@qq.com", "00@qq.com"), around=("%", "我"))  # found by this test, fixed
def test_no_email_address_survives(number: tuple[str, str], around: tuple[str, str]) -> None:
    address, written = number
    text = around[0] + written + around[1]
    output = unicodedata.normalize("NFKC", redacted(text)).lower()
    assert address not in output, text
    assert address.split("@")[0] + "@" not in output, text  # the mailbox name does not survive either


@PROPERTY
@given(number=bank_cards(), around=surroundings(NOT_A_DIGIT))
@example(number=("4000000000000002", "4000000000000002"), around=("我", "X"))  # found by this test, fixed
@example(number=("4000000000000002", "4000 0000 0000 0002"), around=("我", "-0"))  # ditto
@example(number=("6222021234567894", "6222 0212 3456 7894"), around=("1、我的卡号是", "\n2、"))
def test_no_bank_card_survives(number: tuple[str, str], around: tuple[str, str]) -> None:
    digits, written = number
    text = around[0] + written + around[1]
    assert digits not in digit_view(redacted(text)), text


@PROPERTY
@given(data=st.data(), count=st.integers(1, 4))
def test_several_numbers_in_one_message_all_go(data: st.DataObject, count: int) -> None:
    """A message holding several kinds at once (the usual 请联系我 paragraph)."""
    kinds = st.sampled_from(["mobile", "landline", "id", "email", "card"])
    parts: list[str] = [data.draw(filler)]
    secrets: list[str] = []
    for _ in range(count):
        kind = data.draw(kinds)
        if kind == "landline":
            digits, _local, written = data.draw(landlines())
        else:
            digits, written = data.draw({"mobile": mobiles(), "id": id_numbers(), "email": emails(),
                                         "card": bank_cards()}[kind])
        secrets.append(digits)
        parts += [data.draw(NOT_A_DIGIT), written, data.draw(NOT_A_DIGIT), data.draw(filler)]
    text = "".join(parts)
    output = redacted(text)
    view = digit_view(output).lower()
    for secret in secrets:
        assert secret.lower() not in view, text


# -- redacting twice changes nothing more ---------------------------------------------------------------


any_personal_data = st.one_of(
    mobiles().map(lambda pair: pair[1]),
    landlines().map(lambda triple: triple[2]),
    id_numbers().map(lambda pair: pair[1]),
    emails().map(lambda pair: pair[1]),
    bank_cards().map(lambda pair: pair[1]),
    st.sampled_from(["我叫张三", "联系人：欧阳娜娜", "王先生", "A市A2区桂花坪街道景蓉华苑3栋2单元501室", "陈某某"]),
)


@PROPERTY
@given(pieces=st.lists(st.tuples(filler, any_personal_data), max_size=4), tail=filler)
@example(pieces=[("", "4000000000000002"), ("", "13000000000")], tail="")  # found by this test, fixed
def test_redaction_is_idempotent(pieces: list[tuple[str, str]], tail: str) -> None:
    text = "".join(before + written for before, written in pieces) + tail
    once = redacted(text)
    assert redacted(once) == once, text


@PROPERTY
@given(text=st.text(max_size=120))
def test_redaction_of_any_text_is_idempotent(text: str) -> None:
    once = redacted(text)
    assert redacted(once) == once


def test_a_marker_is_never_taken_for_personal_data() -> None:
    for marker in MARKERS.values():
        assert redacted(marker) == marker
        assert redacted(marker * 3) == marker * 3
