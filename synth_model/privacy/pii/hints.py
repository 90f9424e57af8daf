"""Column-name hints: a column called `email` or `dob` needs less evidence from its values to count as PII."""

from __future__ import annotations

import re

from synth_model.config import PII_ENTITIES

_TOKENS: dict[str, frozenset[str]] = {
    "email": frozenset({"email", "emails", "mail"}),
    "phone": frozenset({"phone", "telephone", "tel", "mobile", "cell", "fax", "msisdn"}),
    "credit_card": frozenset({"card", "cc", "ccn", "pan", "creditcard"}),
    "ssn": frozenset({"ssn", "social"}),
    "iban": frozenset({"iban", "bank", "account"}),
    "ip_address": frozenset({"ip", "ipv4", "ipv6", "ipaddress"}),
    "street_address": frozenset({"address", "street", "addr", "address1", "address2"}),
    "postcode": frozenset({"zip", "zipcode", "zip5", "postcode", "postal", "plz"}),
    "date_of_birth": frozenset({"dob", "birth", "birthday", "birthdate", "born"}),
    "person_name": frozenset(
        {"name", "names", "surname", "forename", "firstname", "lastname", "fullname"}
        | {"customer", "patient", "person", "employee", "client", "contact", "member"}
    ),
}
# Matched inside the name with separators removed, for names written as one lower-case word ("dateofbirth").
_PHRASES: dict[str, tuple[str, ...]] = {
    "email": ("email",),
    "phone": ("phone",),
    "credit_card": ("creditcard", "cardnumber"),
    "ssn": ("socialsecurity",),
    "iban": ("iban",),
    "ip_address": ("ipaddr",),
    "street_address": ("address", "street"),
    "postcode": ("zipcode", "postcode", "postalcode"),
    "date_of_birth": ("dateofbirth", "birthdate", "birthday"),
    "person_name": ("firstname", "lastname", "fullname", "surname"),
}
# Columns naming places, organisations or things: their values hold first names ("Lake Jeffrey") but no persons.
_NOT_PERSONS = frozenset(
    {"city", "town", "village", "country", "state", "county", "region", "place", "street", "company", "org"}
    | {"organization", "organisation", "brand", "product", "item", "category", "store", "shop", "hotel", "bank"}
    | {"team", "project", "department", "dept", "job", "title", "file", "host", "domain", "user", "username"}
)
_SURNAME_TOKENS = frozenset({"last", "lastname", "surname", "family", "familyname"})


def _tokens(column: str) -> tuple[set[str], str]:
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", column).lower()
    return set(re.split(r"[^a-z0-9]+", snake)) - {""}, re.sub(r"[^a-z0-9]", "", snake)


def name_hints(column: str) -> frozenset[str]:
    """The entities the column's name suggests (`customer_email` -> email; `DateOfBirth` -> date_of_birth)."""
    tokens, compact = _tokens(column)
    return frozenset(
        entity
        for entity in PII_ENTITIES
        if tokens & _TOKENS[entity] or any(phrase in compact for phrase in _PHRASES[entity])
    )


def rules_out_person(column: str) -> bool:
    return bool(_tokens(column)[0] & _NOT_PERSONS)


def is_surname_column(column: str) -> bool:
    """A single-token name here is a last name (`last_name`, `Surname`), else it is taken as a first name."""
    tokens, compact = _tokens(column)
    return bool(tokens & _SURNAME_TOKENS) or "lastname" in compact or "surname" in compact
