"""Spec-driven SQL built as sqlglot expressions: mapped-column concat/split, event order, post-filters.

A mapped group (e.g. [city, state, zip]) trains as one column whose values are the combinations
seen in the data, so the model cannot mix parts of different rows; after generation the column is
split back and cast to the prepared types. NULL parts travel as a marker so they come back as NULL.
"""

from __future__ import annotations

from sqlglot import exp

SEPARATOR = " | "
NULL_MARK = "\\N"
DIALECT = "duckdb"


def mapped_name(group: list[str]) -> str:
    return "__".join(group)


def col(name: str, table: str | None = None) -> exp.Column:
    return exp.column(name, table=table, quoted=True)


def table_ref(name: str, alias: str | None = None) -> exp.Table:
    schema, table = name.split(".")
    return exp.table_(table, db=schema, quoted=True, alias=alias)


def concat_expr(group: list[str], table: str | None = None) -> exp.Expression:
    """coalesce(CAST(a AS VARCHAR), '\\N') || ' | ' || coalesce(CAST(b AS VARCHAR), '\\N') ..."""
    parts = [
        exp.Coalesce(this=exp.cast(col(c, table), "VARCHAR"), expressions=[exp.Literal.string(NULL_MARK)])
        for c in group
    ]
    joined = parts[0]
    for part in parts[1:]:
        joined = exp.DPipe(this=exp.DPipe(this=joined, expression=exp.Literal.string(SEPARATOR)), expression=part)
    return exp.paren(joined)


def training_query(prepared: str, columns: list[str], mapped: list[list[str]], order_keys: list[str]) -> str:
    """The rows the engine trains on: mapped groups joined (at the first member's place), events ordered."""
    first = {g[0]: g for g in mapped}
    members = {c for g in mapped for c in g}
    selects = [
        exp.alias_(concat_expr(first[c]), mapped_name(first[c]), quoted=True) if c in first else col(c)
        for c in columns
        if c in first or c not in members
    ]
    query = exp.select(*selects).from_(table_ref(prepared))
    if order_keys:
        query = query.order_by(*[col(k) for k in order_keys])
    return query.sql(DIALECT)


def separator_check_query(prepared: str, mapped: list[list[str]]) -> str:
    """Count, per mapped column, values that contain the separator or equal the NULL marker."""
    counts = []
    for c in (c for g in mapped for c in g):
        text = exp.cast(col(c), "VARCHAR")
        has_separator = exp.func("contains", text, exp.Literal.string(SEPARATOR))
        bad = exp.or_(has_separator, exp.EQ(this=text, expression=exp.Literal.string(NULL_MARK)))
        counts.append(exp.alias_(exp.func("count_if", bad), c, quoted=True))
    return exp.select(*counts).from_(table_ref(prepared)).sql(DIALECT)


def split_query(generated: str, types: dict[str, str], mapped: list[list[str]]) -> str:
    """Generated rows back in the prepared shape: mapped columns split, every column cast to its type.

    A mapped group with many combinations is learned as free text, so a generated value may not split
    into parts of the right types: such rows are left out (they are combinations never seen, and are
    counted as dropped unseen mappings) instead of failing the publication.
    """
    position = {c: (g, i + 1) for g in mapped for i, c in enumerate(g)}
    selects, parsed = [], []
    for name, dtype in types.items():
        to = exp.DataType.build(dtype, dialect=DIALECT)
        if name in position:
            group, index = position[name]
            separator, number = exp.Literal.string(SEPARATOR), exp.Literal.number(index)
            part = exp.func("split_part", col(mapped_name(group)), separator, number)
            value = exp.Nullif(this=part, expression=exp.Literal.string(NULL_MARK))
            cast = exp.TryCast(this=value, to=to)
            parsed.append(
                exp.or_(
                    exp.Is(this=value.copy(), expression=exp.null()),
                    exp.not_(exp.Is(this=cast.copy(), expression=exp.null())),
                )
            )
        else:
            cast = exp.Cast(this=col(name), to=to)
        selects.append(exp.alias_(cast, name, quoted=True))
    query = exp.select(*selects).from_(table_ref(generated))
    return (query.where(exp.and_(*parsed)) if parsed else query).sql(DIALECT)


def seen_condition(alias: str, training: str, mapped: list[list[str]]) -> exp.Expression:
    """True where every mapped combination of row `alias` occurs in `training` (NULLs match NULLs)."""
    conditions = []
    for group in mapped:
        match = exp.and_(*[exp.NullSafeEQ(this=col(c, "seen"), expression=col(c, alias)) for c in group])
        subquery = exp.select("1").from_(table_ref(training, alias="seen")).where(match)
        conditions.append(exp.Exists(this=subquery))
    return exp.and_(*conditions) if conditions else exp.true()


def where_query(relation: str, alias: str, condition: exp.Expression, keep: bool = True) -> str:
    """SELECT the rows of a temp relation where `condition` is true (keep) or not true (the dropped)."""
    test = condition if keep else exp.not_(exp.Coalesce(this=exp.paren(condition), expressions=[exp.false()]))
    source = exp.to_table(relation).as_(alias)
    return exp.select(exp.Star()).from_(source).where(test).sql(DIALECT)


def distinct_query(expression: exp.Expression, table: str) -> str:
    return exp.select(expression).distinct().from_(table_ref(table)).sql(DIALECT)
