"""Keyed, consistent fakes: under one secret a real value always gets the same fake, and no two values share one.

Every fake is drawn from Faker seeded with HMAC-SHA256(secret, entity NUL value): reproducible with the secret,
not guessable without it. Fakes keep the real value's format (a phone's separators, a card's length and Luhn
digit, an IBAN's country and checksum, a date's layout) so the model learns the same shapes.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import string
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import timedelta

from faker import Faker

from synth_model.errors import ConfigError
from synth_model.privacy.pii.names import PARTICLES, NameLists, check_locale, name_lists
from synth_model.privacy.pii.patterns import iban_check_digits, luhn_check_digit, parse_date

MAX_ATTEMPTS = 100
COMPOUND_AFTER = 20  # clashes before names turn double-barrelled ("Anna-Maria"): Faker has ~700 first names
MIN_SECRET_BYTES = 16
# Not identifying, so kept: they also keep the share of free-mail addresses the model learns.
PUBLIC_DOMAINS = frozenset(
    {"gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "aol.com", "icloud.com", "gmx.de", "web.de"}
    | {"example.com", "example.org", "example.net"}
)
_COUNTRY_CODE = re.compile(r"\s*(?:\+|00)(?:\d{1,3}(?=\D)|\d)")  # without a separator only one digit is sure


class PiiMapper:
    """Real value -> fake, per entity; share one across tables so they stay consistent with each other.

    One-to-one within an entity, and a fake never equals a reserved real value: on a clash the value is
    re-derived with a counter. Mappings are cached, so the same value in another row, column or table gets
    the same fake. Which fake wins a clash depends on what was reserved and mapped before, so reserve the real
    values of every table first (`replace` reserves its own table's).
    """

    def __init__(self, secret: bytes, locale: str = "en_US") -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"the PII secret has {len(secret)} bytes: use at least {MIN_SECRET_BYTES} random bytes "
                "(secrets.token_bytes(32)), kept away from the model"
            )
        check_locale(locale)
        self.locale = locale
        self._secret = secret
        self._names = name_lists(locale)
        self._faker = Faker(locale)
        self._fakes: dict[tuple[str, str, bool], str] = {}
        self._taken: defaultdict[str, set[str]] = defaultdict(set)  # per entity: real values and fakes handed out

    def reserve(self, entity: str, values: Iterable[str]) -> None:
        """Real values no fake of `entity` may take (an email's domain is reserved among domains too)."""
        values = list(values)
        self._taken[entity].update(values)
        if entity == "email":
            self._taken["email_domain"].update(filter(None, map(_domain, values)))

    def fake(self, entity: str, value: str, *, surname: bool = False) -> str:
        """The fake for `value`; `surname` makes a lone person-name token a last name instead of a first name."""
        key = (entity, value, surname)
        if key in self._fakes:
            return self._fakes[key]
        taken = self._taken[entity]
        for attempt in range(MAX_ATTEMPTS):
            candidate = self._candidate(entity, value, surname, attempt)
            if candidate not in taken:
                break
        # past MAX_ATTEMPTS the last candidate stands: a value with (almost) nothing to vary, such as "n/a"
        taken.add(candidate)
        self._fakes[key] = candidate
        return candidate

    def _seeded(self, entity: str, value: str, attempt: int) -> Faker:
        message = f"{entity}\0{value}" + (f"\0{attempt}" if attempt else "")
        digest = hmac.new(self._secret, message.encode(), hashlib.sha256).digest()
        self._faker.seed_instance(int.from_bytes(digest[:16], "big"))
        return self._faker

    def _candidate(self, entity: str, value: str, surname: bool, attempt: int) -> str:
        domain = self._email_domain(value) if entity == "email" else None  # reseeds: must come before ours
        fk = self._seeded(entity, value, attempt)
        if entity == "email":
            return f"{fk.user_name()}@{domain or fk.free_email_domain()}"
        if entity == "person_name":
            return fake_person_name(value, fk, self._names, surname=surname, compound=attempt >= COMPOUND_AFTER)
        return FAKERS[entity](value, fk)

    def _email_domain(self, email: str) -> str | None:
        """Free-mail domains kept; any other (an employer's) mapped like a value, so colleagues keep one domain."""
        domain = _domain(email)
        if not domain or domain in PUBLIC_DOMAINS:
            return domain
        return self.fake("email_domain", domain)


def _domain(email: str) -> str | None:
    return email.rpartition("@")[2].lower() if "@" in email else None


def _fill(template: str, chars: str) -> str:
    """`template` with its letters and digits replaced, in order, by `chars` (separators stay)."""
    it = iter(chars)
    return "".join(next(it) if c.isalnum() else c for c in template)


def _reshape(value: str, fk: Faker) -> str:
    """Digit for digit, letter for letter (case kept): the fallback for values of no recognised layout."""
    r = fk.random
    pools = (string.digits, string.ascii_uppercase, string.ascii_lowercase)
    return "".join(next((r.choice(p) for p in pools if c in p), c) for c in value)


def fake_phone(value: str, fk: Faker) -> str:
    """Every digit redrawn; separators, a '+'/00 country code and a leading trunk 0/1 kept; area code 2-9."""
    head = _COUNTRY_CODE.match(value)
    out = list(value)
    first = True
    for i in range(head.end() if head else 0, len(value)):
        if not value[i].isdigit() or (first and not head and i == 0 and value[i] in "01"):
            continue
        out[i] = str(fk.random.randint(2, 9) if first else fk.random.randint(0, 9))
        first = False
    return "".join(out)


def fake_card(value: str, fk: Faker) -> str:
    """Same length, separators and first (issuer) digit; a valid Luhn check digit."""
    digits = re.sub(r"\D", "", value)
    if len(digits) < 2:
        return _reshape(value, fk)
    body = digits[0] + "".join(fk.random.choice(string.digits) for _ in range(len(digits) - 2))
    return _fill(value, body + luhn_check_digit(body))


def fake_ssn(value: str, fk: Faker) -> str:
    """An issuable number (area 001-899 but 666, group and serial not zero) in the value's layout."""
    if sum(c.isdigit() for c in value) != 9 or not all(c.isdigit() or not c.isalnum() for c in value):
        return _reshape(value, fk)
    r = fk.random
    area = r.randint(1, 898)
    area += area >= 666
    return _fill(value, f"{area:03d}{r.randint(1, 99):02d}{r.randint(1, 9999):04d}")


def fake_iban(value: str, fk: Faker) -> str:
    """Same country, length, spacing and BBAN layout; valid mod-97 check digits."""
    compact = value.replace(" ", "")
    if not re.fullmatch(r"[A-Za-z]{2}\d{2}[A-Za-z0-9]+", compact):
        return _reshape(value, fk)
    bban = _reshape(compact[4:], fk)
    return _fill(value, compact[:2] + iban_check_digits(compact[:2].upper(), bban.upper()) + bban)


def fake_ip(value: str, fk: Faker) -> str:
    """IPv4 stays IPv4 (private stays private), IPv6 stays IPv6."""
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return fk.ipv4()
    if address.version == 6:
        return fk.ipv6()
    return fk.ipv4_private() if address.is_private else fk.ipv4_public()


def fake_birth_date(value: str, fk: Faker) -> str:
    """Shifted by 1-365 days either way, written in the value's own format."""
    parsed = parse_date(value.strip())
    if parsed is None:
        return _reshape(value, fk)
    day, fmt = parsed
    shift = fk.random.randint(1, 365) * fk.random.choice((-1, 1))
    return (day + timedelta(days=shift)).strftime(fmt)


def fake_person_name(value: str, fk: Faker, names: NameLists, *, surname: bool, compound: bool) -> str:
    """As many name tokens, in the same case: a first name first, a last name last ("Last, First" reversed),
    first names between, initials for initials. Honorifics ("Dr.", "Jr.") and particles ("van") stay."""
    parts = re.split(r"(\s+)", value)
    words = [i for i in range(0, len(parts), 2) if parts[i] and not names.is_honorific(parts[i])]
    words = [i for i in words if parts[i] not in PARTICLES]
    if not words:
        return fk.name()
    reversed_order = len(words) > 1 and parts[words[0]].endswith(",")
    last_at = words[0] if reversed_order else words[-1]
    for i in words:
        token = parts[i].rstrip(",.")
        last = i == last_at if len(words) > 1 else surname
        draw: Callable[[], str] = fk.last_name if last else fk.first_name
        if len(token) == 1:
            new = fk.random.choice(string.ascii_uppercase)
        else:
            new = f"{draw()}-{draw()}" if compound else draw()
        parts[i] = _same_case(new, token) + parts[i][len(token) :]
    return "".join(parts)


def _same_case(new: str, old: str) -> str:
    if len(old) > 1 and old.isupper():
        return new.upper()
    return new.lower() if old.islower() else new


FAKERS: dict[str, Callable[[str, Faker], str]] = {
    "phone": fake_phone,
    "credit_card": fake_card,
    "ssn": fake_ssn,
    "iban": fake_iban,
    "ip_address": fake_ip,
    "postcode": _reshape,
    "date_of_birth": fake_birth_date,
    "street_address": lambda value, fk: fk.street_address(),
    "email_domain": lambda value, fk: fk.domain_name(),
}
