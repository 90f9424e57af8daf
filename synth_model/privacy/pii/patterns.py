"""What each PII entity looks like: one regex per shape, then a validator so look-alikes don't count.

The validators (Luhn, IBAN mod-97, SSN allocation rules, phone digit counts, `ipaddress`, real calendar
dates) are what separate a card number from any 16-digit id. Where a whole value and a span in free text
share a shape they share the regex; shapes too common to trust without a column-name hint (bare digit runs,
postcodes, dates) only count with one.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import NamedTuple

from faker.providers.address.en_US import Provider as _Address

from synth_model.privacy.pii.names import NameLists, is_person_name

EMAIL = r"[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}"
# Maestro cards are 12 digits, so 12-19 (grouped 4-4-4[-n] or Amex 4-6-5)
CARD = r"\d{12,19}|\d{4}(?:[ -]\d{4}){2}(?:[ -]\d{1,7})?|\d{4}[ -]\d{6}[ -]\d{4,5}"
SSN = r"\d{3}-\d{2}-\d{4}"
IBAN = r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?"
IPV4 = r"(?:\d{1,3}\.){3}\d{1,3}"
IPV6 = r"(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}"
PHONE = (
    r"(?:(?:\+|00)\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?|\d{1,4}[ .-])(?:\d{2,8}[ .-]){0,3}\d{2,8}"
    r"(?:\s?(?:x|ext\.?)\s?\d{1,6})?"
)
PHONE_INTL = r"\+\d{8,15}"
PHONE_NANP = r"[2-9]\d{2}[2-9]\d{6}"  # a bare US number (area code, exchange 2-9): in text only, ids look alike
POSTCODE = (
    r"\d{4,6}(?:-\d{4})?|[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}|[A-Z]\d[A-Z] ?\d[A-Z]\d|\d{4} ?[A-Z]{2}"  # US, UK, CA, NL
)
DATE = r"\d{1,4}[-/.]\d{1,2}[-/.]\d{2,4}|[A-Za-z]{3,9} \d{1,2}, \d{4}|\d{1,2} [A-Za-z]{3,9} \d{4}"
_SUFFIXES = sorted(
    {*_Address.street_suffixes, "St", "Ave", "Rd", "Blvd", "Dr", "Ln", "Ct", "Pl", "Pkwy", "Hwy", "Sq", "Ter", "Cir"},
    key=len,
    reverse=True,
)
STREET = (
    rf"\d{{1,6}}[A-Za-z]?\s+(?:[A-Za-z0-9'.-]+\s+){{0,4}}(?:{'|'.join(_SUFFIXES)})\.?"
    r"(?:,?\s+(?:Apt\.?|Apartment|Suite|Ste\.?|Unit|#)\s*[\w-]+)?"
)
EXTENSION = re.compile(r"\s?(?:x|ext\.?)\s?\d{1,6}$")
_IPV4 = re.compile(IPV4)
DATE_FORMATS = (
    "%Y-%m-%d",
    "%Y/%m/%d",
    "%m/%d/%Y",
    "%d/%m/%Y",
    "%d.%m.%Y",
    "%d-%m-%Y",
    "%m-%d-%Y",
    "%B %d, %Y",
    "%b %d, %Y",
    "%d %B %Y",
    "%d %b %Y",
)
IBAN_LENGTHS = {
    **dict.fromkeys(["NO"], 15),
    **dict.fromkeys(["BE"], 16),
    **dict.fromkeys(["DK", "FI", "FO", "GL", "NL"], 18),
    **dict.fromkeys(["MK", "SI"], 19),
    **dict.fromkeys(["AT", "BA", "EE", "KZ", "LT", "LU", "XK"], 20),
    **dict.fromkeys(["CH", "HR", "LI", "LV"], 21),
    **dict.fromkeys(["BG", "BH", "CR", "DE", "GB", "GE", "IE", "ME", "RS"], 22),
    **dict.fromkeys(["AE", "GI", "IL"], 23),
    **dict.fromkeys(["AD", "CZ", "ES", "MD", "PK", "RO", "SA", "SE", "SK", "TN", "VG"], 24),
    **dict.fromkeys(["PT"], 25),
    **dict.fromkeys(["IS", "TR"], 26),
    **dict.fromkeys(["FR", "GR", "IT", "MC", "MR", "SM"], 27),
    **dict.fromkeys(["AZ", "CY", "DO", "GT", "HU", "LB", "PL"], 28),
    **dict.fromkeys(["BR", "EG", "PS", "QA", "UA"], 29),
    **dict.fromkeys(["JO", "KW", "MU"], 30),
    **dict.fromkeys(["MT"], 31),
}
# Entities matched inside free text, in the order that wins when two spans overlap (most specific first).
SPAN_ENTITIES = ("credit_card", "iban", "ssn", "email", "ip_address", "phone", "person_name")
HINT_ONLY = frozenset({"postcode", "date_of_birth"})


def _luhn_sum(digits: str) -> int:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total


def luhn_ok(value: str) -> bool:
    digits = re.sub(r"\D", "", value)
    return 12 <= len(digits) <= 19 and _luhn_sum(digits) % 10 == 0


def luhn_check_digit(payload: str) -> str:
    """The digit that makes `payload` + digit pass Luhn."""
    return str(-_luhn_sum(payload + "0") % 10)


def _iban_remainder(compact: str) -> int:
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97


def iban_ok(value: str) -> bool:
    compact = value.replace(" ", "").upper()
    return len(compact) == IBAN_LENGTHS.get(compact[:2], len(compact)) and _iban_remainder(compact) == 1


def iban_check_digits(country: str, bban: str) -> str:
    return f"{98 - _iban_remainder(country + '00' + bban):02d}"


def ssn_ok(value: str) -> bool:
    """Never issued: area 000, 666 or 900-999, group 00, serial 0000."""
    digits = re.sub(r"\D", "", value)
    if len(digits) != 9:
        return False
    area, group, serial = int(digits[:3]), int(digits[3:5]), int(digits[5:])
    return 0 < area < 900 and area != 666 and group > 0 and serial > 0


def phone_ok(value: str) -> bool:
    """International (+ or 00): 8-15 digits after the prefix; national: 10 digits, or 11 after a trunk 0/1."""
    main = EXTENSION.sub("", value.strip())
    if _IPV4.fullmatch(main):
        return False
    digits = re.sub(r"\D", "", main)
    if main.startswith("00"):
        digits = digits[2:]
    if main.startswith(("+", "00")):
        return 8 <= len(digits) <= 15
    return len(digits) == 10 or (len(digits) == 11 and digits[0] in "01")


def ip_ok(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def parse_date(value: str) -> tuple[date, str] | None:
    """The date and the first of DATE_FORMATS that reads it, so a fake can be written the same way."""
    for fmt in DATE_FORMATS:
        try:
            return datetime.strptime(value, fmt).date(), fmt
        except ValueError:
            continue
    return None


def is_birth_date(value: str) -> bool:
    parsed = parse_date(value)
    return parsed is not None and date(1900, 1, 1) <= parsed[0] <= date.today()


def _always(value: str) -> bool:
    return True


@dataclass(frozen=True)
class Shape:
    pattern: re.Pattern[str]
    valid: Callable[[str], bool]
    needs_hint: bool = False


def _shape(regex: str, valid: Callable[[str], bool] = _always, needs_hint: bool = False, flags: int = 0) -> Shape:
    return Shape(re.compile(regex, flags), valid, needs_hint)


SHAPES: dict[str, tuple[Shape, ...]] = {
    "email": (_shape(EMAIL),),
    "phone": (_shape(f"{PHONE}|{PHONE_INTL}", phone_ok), _shape(r"\d{10,11}", phone_ok, needs_hint=True)),
    "credit_card": (_shape(CARD, luhn_ok),),
    "ssn": (_shape(SSN, ssn_ok), _shape(r"\d{9}", ssn_ok, needs_hint=True)),
    "iban": (_shape(IBAN, iban_ok),),
    "ip_address": (_shape(f"{IPV4}|{IPV6}", ip_ok),),
    "street_address": (_shape(STREET, flags=re.IGNORECASE),),
    "postcode": (_shape(POSTCODE, needs_hint=True, flags=re.IGNORECASE),),
    "date_of_birth": (_shape(DATE, is_birth_date, needs_hint=True),),
}


def matches(entity: str, value: str, *, hint: bool, names: NameLists) -> bool:
    """Does the whole value (already stripped) look like `entity`?"""
    if entity == "person_name":
        return is_person_name(value, names)
    return any(
        (hint or not shape.needs_hint) and shape.pattern.fullmatch(value) and shape.valid(value)
        for shape in SHAPES[entity]
    )


class Span(NamedTuple):
    entity: str
    start: int
    end: int


def _bounded(regex: str) -> re.Pattern[str]:
    """The shape as a standalone token: not glued to a word, number or address before or after it."""
    return re.compile(rf"(?<![\w.:@+-])(?:{regex})(?![\w@]|[.:-]\w)")


_SPAN_PATTERNS: dict[str, tuple[re.Pattern[str], Callable[[str], bool]]] = {
    "credit_card": (_bounded(CARD), luhn_ok),
    "iban": (_bounded(IBAN), iban_ok),
    "ssn": (_bounded(SSN), ssn_ok),
    "email": (_bounded(EMAIL), _always),
    "ip_address": (_bounded(f"{IPV4}|{IPV6}"), ip_ok),
    "phone": (_bounded(f"{PHONE}|{PHONE_INTL}|{PHONE_NANP}"), phone_ok),
}
# Lookahead so every start is tried: "Dear John Smith" must not lose "John" to the failed pair "Dear John".
_NAME_PAIR = re.compile(r"\b(?=([A-ZÀ-Ý][a-zà-ÿ]+(?:[A-Z][a-z]+)?) ([A-ZÀ-Ý][a-zà-ÿ]+(?:-[A-ZÀ-Ý][a-zà-ÿ]+)?)\b)")
_DIGIT = re.compile(r"\d")


def _candidates(entity: str, text: str, names: NameLists) -> Iterator[tuple[int, int]]:
    if entity == "person_name":
        for m in _NAME_PAIR.finditer(text):
            if m.group(1).casefold() in names.first and m.group(2).casefold() in names.last:
                yield m.start(1), m.end(2)
        return
    pattern, valid = _SPAN_PATTERNS[entity]
    whole = text.strip()
    for m in pattern.finditer(text):
        # a value that is one bare number is judged as a column (ids look like phones), not as text
        if valid(m.group()) and not (m.group() == whole and whole.isdigit()):
            yield m.span()


def find_spans(text: str, entities: Iterable[str], names: NameLists) -> list[Span]:
    """PII spans inside free text, non-overlapping (the earlier entity of SPAN_ENTITIES wins), in text order.
    Person names count only as a known first name followed by a known last name."""
    wanted = set(entities)
    has_digit = _DIGIT.search(text) is not None
    spans: list[Span] = []
    for entity in SPAN_ENTITIES:
        if entity not in wanted or (entity == "email" and "@" not in text):
            continue
        if entity not in ("email", "person_name") and not has_digit:
            continue
        for start, end in _candidates(entity, text, names):
            if not any(start < s.end and s.start < end for s in spans):
                spans.append(Span(entity, start, end))
    return sorted(spans, key=lambda s: s.start)
