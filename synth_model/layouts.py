"""Identifier layouts: the shapes an identifier column's values share, as one anchored regex.

`N123AB`, `N45Z` and `N7001` are runs of character classes (an `N`, digits, maybe letters); UUIDs
are five hex segments between dashes. A grammar that knows the layout keeps generated identifiers
in it, where a bare character class (`^[0-9A-Z]+$`) lets the model write `9NZ` or `----`. The
finest description that needs at most `MAX_LAYOUTS` alternatives wins: runs of one class, then
letter-and-digit segments between other characters, then the characters seen.
"""

from __future__ import annotations

import re
from collections.abc import Callable

MAX_LAYOUTS = 8  # alternatives in one pattern; values of more shapes get a coarser description
MIN_SHARED = 5  # distinct values a run must take the same text in before it is kept literally
HEX = set("abcdefABCDEF")
MIN_HEX_LETTERS = 4  # of the six, seen before letters and digits are taken for hex digits

_RUNS = re.compile(r"[0-9]+|[A-Z]+|[a-z]+|.", re.DOTALL)
_SEGMENTS = re.compile(r"[0-9A-Za-z]+|.", re.DOTALL)
_REGEX_SYNTAX = set("\\.^$|?*+()[]{}-/")  # escaped outside and inside classes alike (Python and Rust regex)


Parts = tuple[tuple[str, str], ...]  # (kind, text) of each run of a value


def char_class(c: str) -> str:
    """A character's class: #9 digit, #A upper or #a lower ASCII letter, else the literal `=c`."""
    if c.isascii() and c.isdigit():
        return "#9"
    if c.isascii() and c.isupper():
        return "#A"
    if c.isascii() and c.islower():
        return "#a"
    return "=" + c


def _runs(value: str) -> Parts:
    """(class, text) parts: the longest runs of one class, each other character alone."""
    return tuple((char_class(run[0]), run) for run in _RUNS.findall(value))


def _segments(value: str) -> Parts:
    """(kind, text) parts: letter-and-digit segments (kind `#w`), each other character alone."""
    return tuple(
        ("#w" if run[0].isascii() and run[0].isalnum() else "=" + run, run) for run in _SEGMENTS.findall(value)
    )


def _escape(text: str) -> str:
    return "".join("\\" + c if c in _REGEX_SYNTAX else c for c in text)


def character_class(chars: set[str]) -> str:
    """A regex class of the characters seen; letters mixed with digits, all within a-f and at least
    `MIN_HEX_LETTERS` of them, are hex digits."""
    digits = any(c.isascii() and c.isdigit() for c in chars)
    letters = {c for c in chars if c.isascii() and c.isalpha()}
    hexadecimal = digits and letters <= HEX and len({c.lower() for c in letters}) >= MIN_HEX_LETTERS
    parts = ["0-9"] if digits else []
    for full, hex_range, case in (("A-Z", "A-F", str.isupper), ("a-z", "a-f", str.islower)):
        if any(map(case, letters)):
            parts.append(hex_range if hexadecimal else full)
    others = sorted(c for c in chars if not (c.isascii() and c.isalnum()))
    return "[" + "".join(parts) + _escape("".join(others)) + "]"


def _repeat(low: int, high: int) -> str:
    return "" if low == high == 1 else f"{{{low}}}" if low == high else f"{{{low},{high}}}"


def _layout(values: list[str], split: Callable[[str], Parts]) -> str:
    """One shape's regex: literal characters, runs whose text never varies (in enough values), and
    for the rest the class of their characters with the lengths seen. Streams the values: a
    million identifiers are summarised, never held as parts."""
    first = split(values[0])
    fixed: list[str | None] = [text for _, text in first]  # None once a run's text varies
    chars: list[set[str]] = [set() for _ in first]
    lengths = [[len(text), len(text)] for _, text in first]
    for value in values:
        for i, (_, text) in enumerate(split(value)):
            if text != fixed[i]:
                fixed[i] = None
            chars[i].update(text)
            bounds = lengths[i]
            bounds[0], bounds[1] = min(bounds[0], len(text)), max(bounds[1], len(text))
    out = []
    for (kind, text), same, seen, (low, high) in zip(first, fixed, chars, lengths, strict=True):
        if kind.startswith("=") or (same is not None and len(values) >= MIN_SHARED):
            out.append(_escape(text))
        else:
            out.append(character_class(seen) + _repeat(low, high))
    return "".join(out)


def identifier_pattern(values: list[str]) -> str:
    """An anchored regex every one of the (distinct) `values` matches, in the finest of the three
    descriptions that needs at most `MAX_LAYOUTS` alternatives."""
    for split in (_runs, _segments):
        shapes: dict[tuple[str, ...], list[str]] = {}
        for value in values:
            shapes.setdefault(tuple(kind for kind, _ in split(value)), []).append(value)
            if len(shapes) > MAX_LAYOUTS:
                break
        else:
            ordered = sorted(shapes.items(), key=lambda shape: (-len(shape[1]), shape[0]))
            layouts = [_layout(members, split) for _, members in ordered]
            return "^" + layouts[0] + "$" if len(layouts) == 1 else "^(" + "|".join(layouts) + ")$"
    return character_pattern(values)


def character_pattern(values: list[str]) -> str:
    """The coarsest description: any string of the characters seen (empty too, where one was)."""
    return "^" + character_class(set("".join(values))) + ("*" if "" in values else "+") + "$"
