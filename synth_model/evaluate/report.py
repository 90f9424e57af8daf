"""The evaluation: every measure on (training, holdout, synthetic), overall scores, grades, HTML.

`evaluate` returns one JSON-able dict; `render_html` turns it into one self-contained page (inline
SVG, no scripts or external files) with the score summary, per-column distributions, correlation
heatmaps, the PCA scatter and the privacy attacks.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from threadpoolctl import threadpool_limits

from synth_model.errors import DataError
from synth_model.evaluate import (
    attribute,
    copies,
    correlations,
    deep_structure,
    distributions,
    membership,
    sdmetrics_quality,
    sequences,
    text,
    utility,
)
from synth_model.evaluate.encoding import Encoder, frame, is_numeric
from synth_model.privacy.pii import PiiReport, replay
from synth_model.tables import as_arrow, replace_whole

GRADES = ((8, "Excellent"), (6, "Good"), (4, "Moderate"), (2, "Poor"), (0, "Very poor"))
MIN_LABEL_COUNT = 5  # real rows a text value needs to be shown by name in the report
EPOCH = dt.datetime(1970, 1, 1)  # `frame` writes times as days since it


def grade(score: float | None) -> str | None:
    if score is None:
        return None
    return next(name for floor, name in GRADES if score >= floor)


def _overall(parts: dict) -> dict:
    scores = [p["score"] for p in parts.values() if p.get("score") is not None]
    score = float(np.mean(scores)) if scores else None
    return {"score": score, "grade": grade(score)}


def evaluate(
    training: pa.Table,
    holdout: pa.Table,
    synthetic: pa.Table,
    target: str | None = None,
    quasi_identifiers: list[str] | None = None,
    pii_report: PiiReport | None = None,
    sequence_stats: dict | None = None,
) -> dict:
    """Quality and privacy of `synthetic` against the real `training` rows and the unseen `holdout`.

    With the fit's `pii_report`, PII replay counts the real training PII values found in synthetic rows;
    with `sequence_stats` (grouped tables, see `sequences.sequence_stats`) the entities' structure is scored.
    OpenMP runs one thread here: the measures' many tiny parallel loops (the utility models' boosting
    above all) wait at every barrier for a thread the OS has descheduled when the machine is busy,
    which made one boosting fit take minutes instead of a second (benchmarks/evaluation_threads.py).
    """
    training, holdout, synthetic = _checked(training, holdout, synthetic)
    with threadpool_limits(1, user_api="openmp"):
        return _evaluate(training, holdout, synthetic, target, quasi_identifiers, pii_report, sequence_stats)


def _checked(training, holdout, synthetic) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Arrow tables (pandas accepted, decimals as floats) with rows, the training columns and no infinities."""
    tables = {"training": as_arrow(training), "holdout": as_arrow(holdout), "synthetic": as_arrow(synthetic)}
    columns = tables["training"].column_names
    for name, table in tables.items():
        if missing := [c for c in columns if c not in table.column_names]:
            raise DataError(f"the {name} table lacks column(s) {missing} of the training table")
        if table.num_rows == 0:
            raise DataError(
                f"the {name} table has no rows: the measures compare synthetic rows with the training rows"
                + (" and with real rows the model never saw (hold some out: data.holdout)" if name == "holdout" else "")
            )
        for column in columns:
            values = table.column(column)
            if pa.types.is_floating(values.type) and pc.any(pc.is_inf(values)).as_py():
                raise DataError(f"column '{column}' of the {name} table holds infinite values: make them NULL first")
    return tables["training"], tables["holdout"], tables["synthetic"]


def _evaluate(
    training: pa.Table,
    holdout: pa.Table,
    synthetic: pa.Table,
    target: str | None,
    quasi_identifiers: list[str] | None,
    pii_report: PiiReport | None,
    sequence_stats: dict | None,
) -> dict:
    started = time.perf_counter()
    real, held, synth = frame(training), frame(holdout), frame(synthetic.select(training.column_names))
    encoder = Encoder.fit(real)
    quality = {
        "column_distribution_stability": distributions.measure(real, synth),
        "column_correlation_stability": correlations.measure(real, synth),
        "deep_structure_stability": deep_structure.measure(real, synth, encoder),
        "text_structure_similarity": text.measure(real, synth),
        "text_semantic_similarity": text.measure_semantics(real, synth),
    }
    if sequence_stats is not None:
        quality["sequence_structure_stability"] = sequences.measure(sequence_stats)
    # replaced PII differs from the real values by design, which would hide a copied row: rows are
    # compared on the other columns (all of them if every column was replaced)
    replaced = pii_report.columns_replaced if pii_report else set()
    kept = [c for c in real.columns if c not in replaced] or list(real.columns)
    near = encoder if len(kept) == len(real.columns) else Encoder.fit(real[kept])
    privacy = {
        "membership_inference_protection": membership.measure(real[kept], held[kept], synth[kept], near),
        "attribute_inference_protection": attribute.measure(real, held, synth, quasi_identifiers),
        "distance_to_closest_record": copies.measure(real[kept], held[kept], synth[kept], near)
        | {"columns_left_out": sorted(set(real.columns) - set(kept))},
    }
    if pii_report is not None and not pii_report.empty:
        privacy["pii_replay"] = replay(training, synthetic, pii_report)
    result = {
        "rows": {"training": len(real), "holdout": len(held), "synthetic": len(synth)},
        "quality": {"overall": _overall(quality), **quality},
        "privacy": {"overall": _overall(privacy), **privacy},
        "exact_copy_rate": privacy["distance_to_closest_record"]["exact_copy_rate"],
        "utility": utility.measure(real, held, synth, target) if target else None,
        "sdmetrics": sdmetrics_quality.quality(training, synthetic.select(training.column_names)),
        "distributions": _distribution_samples(
            real, synth, pii_report.columns_found if pii_report else set(), _temporal(training.schema)
        ),
    }
    result["seconds"] = time.perf_counter() - started
    return result


def _temporal(schema: pa.Schema) -> dict[str, str]:
    """Temporal columns and how `frame` wrote them as numbers: dates as ordinals, times as epoch days."""
    kinds = {f.name: "date" for f in schema if pa.types.is_date(f.type)}
    return kinds | {f.name: "time" for f in schema if pa.types.is_timestamp(f.type)}


def _temporal_label(days: float, kind: str) -> str:
    if kind == "date":
        return dt.date.fromordinal(max(1, round(days))).isoformat()
    return (EPOCH + dt.timedelta(days=days)).isoformat(sep=" ", timespec="minutes").removesuffix(" 00:00")


def _distribution_samples(
    real: pd.DataFrame, synth: pd.DataFrame, hidden: set[str], temporal: dict[str, str], bins: int = 12
) -> dict:
    """Per column, the real and synthetic shares per bin or category, for the report's plots.
    Bins are labelled by their lower edge: a date for dates and times (`frame` made them days), a
    whole number for whole numbers (one bin per value when they span no more than `bins` values).

    A report is shared more widely than the data: columns in `hidden` (where PII was found) get no
    plot, and other text columns show only values that at least `MIN_LABEL_COUNT` real rows hold
    (categories, not one person's identifier or note).
    """
    out = {}
    for name in real.columns:
        if name in hidden:
            continue
        r, s = real[name], synth[name]
        if is_numeric(r):
            values = r.dropna().astype(float)
            whole = pd.api.types.is_integer_dtype(r) and len(values) and values.max() - values.min() < bins
            if whole:
                edges = np.arange(values.min() - 0.5, values.max() + 1.5)
            else:
                edges = np.histogram_bin_edges(values, bins=bins) if len(values) else np.array([0.0, 1.0])
            hr = np.histogram(values, edges)[0]
            written = pd.to_numeric(s, errors="coerce").dropna().astype(float)
            hs = np.histogram(written.clip(edges[0], edges[-1]), edges)[0]
            if name in temporal:
                labels = [_temporal_label(float(e), temporal[name]) for e in edges[:-1]]
            elif pd.api.types.is_integer_dtype(r):
                labels = [f"{e + 0.5 * whole:.0f}" for e in edges[:-1]]
            else:
                labels = [f"{e:.3g}" for e in edges[:-1]]
        else:
            counts = _labels(r).value_counts()
            top = counts[counts >= MIN_LABEL_COUNT].index[:bins]
            hr = counts.reindex(top, fill_value=0).to_numpy()
            hs = _labels(s).value_counts().reindex(top, fill_value=0).to_numpy()
            labels = list(top)
        out[name] = {
            "labels": labels,
            "real": (hr / max(hr.sum(), 1)).round(4).tolist(),
            "synthetic": (hs / max(hs.sum(), 1)).round(4).tolist(),
        }
    return out


def _labels(column: pd.Series) -> pd.Series:
    return column.astype(object).where(column.notna(), "NULL").astype(str)


# ------------------------------------------------------------------------------------ HTML
def _e(value) -> str:
    return html.escape(str(value))


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.2f}" if isinstance(value, float) else _e(value)


def _bars(spec: dict, width: int = 360, height: int = 120) -> str:
    n = len(spec["labels"])
    if not n:
        return ""
    top = max(max(spec["real"], default=0), max(spec["synthetic"], default=0)) or 1
    slot = width / n
    parts = [f'<svg width="{width}" height="{height + 14}" role="img">']
    for i in range(n):
        for k, (key, color) in enumerate((("real", "#4c78a8"), ("synthetic", "#f58518"))):
            h = spec[key][i] / top * height
            x = i * slot + k * slot / 2
            parts.append(
                f'<rect x="{x:.1f}" y="{height - h:.1f}" width="{slot / 2 - 1:.1f}" height="{h:.1f}" '
                f'fill="{color}"><title>{_e(spec["labels"][i])}: {key} {spec[key][i]:.3f}</title></rect>'
            )
    parts.append(f'<text x="0" y="{height + 12}" font-size="10">{_e(spec["labels"][0])}</text></svg>')
    return "".join(parts)


def _heatmap(matrix: list[list[float]], labels: list[str], title: str, signed: bool) -> str:
    size = 16
    n = len(labels)
    parts = [f'<figure><figcaption>{_e(title)}</figcaption><svg width="{n * size + 2}" height="{n * size + 2}">']
    for i in range(n):
        for j in range(n):
            v = matrix[i][j]
            a = min(abs(v), 1.0)
            color = f"rgba(214,39,40,{a:.2f})" if (signed and v < 0) else f"rgba(31,119,180,{a:.2f})"
            parts.append(
                f'<rect x="{j * size}" y="{i * size}" width="{size}" height="{size}" fill="{color}">'
                f"<title>{_e(labels[i])} / {_e(labels[j])}: {v:.3f}</title></rect>"
            )
    parts.append("</svg></figure>")
    return "".join(parts)


def _scatter(projection: dict, size: int = 320) -> str:
    points = {k: np.asarray(v[:600]) for k, v in projection.items() if len(v)}
    everything = np.vstack(list(points.values()))
    lo, hi = everything.min(axis=0), everything.max(axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1)
    parts = [f'<svg width="{size}" height="{size}" role="img">']
    for key, color in (("real", "#4c78a8"), ("synthetic", "#f58518")):
        for x, y in (points.get(key, np.zeros((0, 2))) - lo) / span * (size - 8) + 4:
            parts.append(f'<circle cx="{x:.1f}" cy="{size - y:.1f}" r="1.6" fill="{color}" fill-opacity="0.5"/>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(result: dict, title: str = "Synthetic data evaluation") -> str:
    q, p = result["quality"], result["privacy"]
    rows = "".join(
        f"<tr><td>{_e(name.replace('_', ' '))}</td><td>{_fmt(part.get('score'))}</td><td>{_e(grade(part.get('score')) or '')}</td></tr>"
        for section in (q, p)
        for name, part in section.items()
        if name != "overall"
    )
    corr = q["column_correlation_stability"]
    heatmaps = ""
    if corr.get("score") is not None:
        diff = (np.abs(np.asarray(corr["real"]) - np.asarray(corr["synthetic"]))).tolist()
        heatmaps = "".join(
            [
                _heatmap(corr["real"], corr["columns"], "real", True),
                _heatmap(corr["synthetic"], corr["columns"], "synthetic", True),
                _heatmap(diff, corr["columns"], "absolute difference", False),
            ]
        )
    deep = q["deep_structure_stability"]
    scatter = _scatter(deep["projection"]) if deep.get("projection") else "<p>no projection</p>"
    columns = "".join(
        f"<figure><figcaption>{_e(name)} (JS distance "
        f"{_fmt(q['column_distribution_stability']['per_column'].get(name))})</figcaption>{_bars(spec)}</figure>"
        for name, spec in result["distributions"].items()
    )
    attacks = "".join(
        f"<tr><td>{a['member_share']}</td><td>{a['quantile']}</td><td>{a['precision']:.3f}</td><td>{a['accuracy']:.3f}</td></tr>"
        for a in p["membership_inference_protection"]["attacks"]
    )
    dcr = p["distance_to_closest_record"]
    pii_html = ""
    if p.get("pii_replay"):
        r = p["pii_replay"]
        replayed = "".join(
            f"<tr><td>{_e(e['column'])}</td><td>{_e(e['entity'])}</td><td>{e['training_values']}</td>"
            f"<td>{e['replayed']}</td><td>{e['share']:.3f}</td></tr>"
            for e in r["columns"] + r["text"]
        )
        pii_html = (
            f"<h3>PII replay</h3><p>{r['replayed_values']} real training PII values reappear; "
            f"{r['share']:.2%} of synthetic rows hold one.</p><table><tr><th>column</th><th>entity</th>"
            f"<th>training values</th><th>replayed</th><th>share of synthetic rows</th></tr>{replayed}</table>"
        )
    seq = q.get("sequence_structure_stability")
    sequences_html = _sequences_html(seq) if seq else ""
    utility_html = ""
    if result.get("utility"):
        u = result["utility"]
        utility_html = (
            f"<section id='utility'><h2>Machine-learning utility ({_e(u['task'])}, target {_e(u['target'])})</h2>"
            f"<p>trained on real: {_e(u['train_real'])}; trained on synthetic: {_e(u['train_synthetic'])}</p></section>"
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:1100px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px}}figure{{display:inline-block;margin:0 1rem 1rem 0}}
.legend span{{padding:0 6px;color:#fff}}</style></head><body>
<h1>{_e(title)}</h1>
<p>{result["rows"]["training"]} training rows, {result["rows"]["holdout"]} holdout rows, {result["rows"]["synthetic"]} synthetic rows.</p>
<section id="scores"><h2>Scores</h2>
<p>Quality: <b>{_fmt(q["overall"]["score"])}</b> ({_e(q["overall"]["grade"])}) &middot; Privacy: <b>{_fmt(p["overall"]["score"])}</b>
({_e(p["overall"]["grade"])}) &middot; exact copies of training rows: {result["exact_copy_rate"]:.2%}
&middot; SDMetrics QualityReport: {result["sdmetrics"]["quality_overall"]:.3f} (0-1; Column Shapes {result["sdmetrics"]["column_shapes"]:.3f}, Column Pair Trends {result["sdmetrics"]["pair_trends"]:.3f})</p>
<table><tr><th>measure</th><th>score (0-10)</th><th>grade</th></tr>{rows}</table></section>
<section id="distributions"><h2>Column distributions</h2>
<p class="legend"><span style="background:#4c78a8">real</span> <span style="background:#f58518">synthetic</span></p>{columns}</section>
<section id="correlations"><h2>Correlations</h2>{heatmaps}</section>
<section id="pca"><h2>Principal components (fitted on real)</h2>{scatter}</section>
<section id="privacy"><h2>Privacy attacks</h2>
<p>Distance to closest record: median synthetic {dcr["dcr_synthetic_median"]:.3f}, holdout {dcr["dcr_holdout_median"]:.3f};
share of synthetic rows closer to training than 95% of holdout rows: {dcr["closer_than_holdout_share"]:.3f}</p>
<table><tr><th>member share</th><th>threshold quantile</th><th>precision</th><th>accuracy</th></tr>{attacks}</table>
{pii_html}</section>
{sequences_html}
{utility_html}
</body></html>
"""


def _sequences_html(seq: dict) -> str:
    """The entities' structure: each family of distances, and how each column carries over within a group."""
    sizes = seq["records_per_group"]
    families = "".join(
        f"<tr><td>{_e(k.replace('_', ' '))}</td><td>{_fmt(v)}</td></tr>" for k, v in seq["distances"].items()
    )
    carried = "".join(
        f"<tr><td>{_e(c)}</td><td>{_e(v['measure'])}</td><td>{_fmt(v['real'])}</td><td>{_fmt(v['synthetic'])}</td></tr>"
        for c, v in seq["within_group"].items()
    )
    return (
        f"<section id='sequences'><h2>Entities (groups of records)</h2><p>{seq['groups']['real']} real and "
        f"{seq['groups']['synthetic']} synthetic groups; records per group, mean: real "
        f"{_fmt(sizes['real'].get('mean'))}, synthetic {_fmt(sizes['synthetic'].get('mean'))}; records out of order: "
        f"real {seq['order_violations']['real']}, synthetic {seq['order_violations']['synthetic']}.</p>"
        f"<table><tr><th>distance (0 same, 1 disjoint)</th><th>value</th></tr>{families}</table>"
        "<h3>Carried over to the next record of a group</h3><table><tr><th>column</th><th>measure</th>"
        f"<th>real</th><th>synthetic</th></tr>{carried}</table></section>"
    )


def training_rows(real: pa.Table, holdout: pa.Table) -> pa.Table:
    """The real rows a model was trained on: the input minus its held-out rows, compared whole and
    counted (a row that equals a held-out one is removed once per held-out copy, not every time)."""
    keys = frame(real.select(holdout.column_names)).astype(str).agg("\x1f".join, axis=1)
    held = frame(holdout).astype(str).agg("\x1f".join, axis=1).value_counts()
    nth = keys.groupby(keys).cumcount()  # this row is the nth (from 0) with its values
    return real.filter(pa.array((nth >= keys.map(held).fillna(0)).to_numpy()))


def save_report(result: dict, directory: str | Path, title: str = "Synthetic data evaluation") -> dict[str, Path]:
    """Write `evaluation.json` and `report.html` into `directory`, each through a temp file renamed in place."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "evaluation.json", "html": out / "report.html"}
    texts = {"json": json.dumps(result, indent=2, default=str), "html": render_html(result, title)}
    for key, path in paths.items():
        replace_whole(path, lambda tmp, text=texts[key]: tmp.write_text(text))
    return paths
