"""Person names, known offline: Faker's own first/last-name lists for en_US plus the configured locale."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import lru_cache

from faker.config import AVAILABLE_LOCALES

from synth_model.errors import ConfigError

# Lower-case words inside names ("Vincent van Gogh"): neither detected as names nor replaced.
PARTICLES = frozenset({"van", "von", "de", "da", "del", "der", "den", "di", "du", "la", "le", "bin", "al", "y"})
_FIRST = ("first_names", "first_names_male", "first_names_female", "first_names_nonbinary")
_LAST = ("last_names", "last_names_male", "last_names_female", "last_names_nonbinary")
_HONORIFIC = tuple(
    f"{kind}{sex}" for kind in ("prefixes", "suffixes") for sex in ("", "_male", "_female", "_nonbinary")
)


@dataclass(frozen=True)
class NameLists:
    """Casefolded lookups; honorifics ("Dr.", "Jr.", "PhD") are stored without their dots."""

    first: frozenset[str]
    last: frozenset[str]
    honorifics: frozenset[str]

    def is_honorific(self, token: str) -> bool:
        return token.strip(".,").casefold() in self.honorifics


def check_locale(locale: str) -> None:
    if locale not in AVAILABLE_LOCALES:
        raise ConfigError(
            f"replace_pii.locale '{locale}' is not a Faker locale: use one such as en_US, en_GB, de_DE or fr_FR"
        )


@lru_cache
def name_lists(locale: str = "en_US") -> NameLists:
    """en_US names always (US data mixes origins), plus the locale's own where Faker has a person provider."""
    check_locale(locale)
    providers = [_person_provider("en_US")]
    if locale != "en_US" and (provider := _person_provider(locale)) is not None:
        providers.append(provider)

    def gather(attributes: tuple[str, ...]) -> frozenset[str]:
        return frozenset(
            str(name).strip(".").casefold() for p in providers for a in attributes for name in getattr(p, a, ())
        )

    return NameLists(first=gather(_FIRST), last=gather(_LAST), honorifics=gather(_HONORIFIC))


def _person_provider(locale: str) -> type | None:
    try:
        return importlib.import_module(f"faker.providers.person.{locale}").Provider
    except ModuleNotFoundError:
        return None


def _is_name_token(token: str) -> bool:
    return token[:1].isupper() and all(c.isalpha() or c in "'’-." for c in token)


def is_person_name(value: str, names: NameLists) -> bool:
    """Capitalized tokens (honorifics and particles aside) where the first is a known first name, the last a
    known last name ("Smith, John" reversed), or a lone token either. Position matters: cities such as
    "Lake Jeffrey" hold a first name in last place and would pass a mere "one token is a name" test."""
    tokens = [t.strip(",") for t in value.split()]
    words = [t for t in tokens if t and not names.is_honorific(t) and t not in PARTICLES]
    if not 1 <= len(words) <= 4 or not all(_is_name_token(t) for t in words):
        return False
    first, last = words[0].casefold(), words[-1].casefold()
    if len(words) == 1:
        return first in names.first or first in names.last
    if "," in value:
        first, last = last, first
    return first in names.first or last in names.last
