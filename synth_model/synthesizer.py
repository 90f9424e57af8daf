"""`Synthesizer`: the small public face (fit, generate, save, load) over the pipeline stages.

An artifact folder holds everything one fit made: the resolved config, the learned schema (JSON
Schema), the model or LoRA adapter with its tokenizer, the real holdout rows and training metrics.
"""

from __future__ import annotations

import json
import secrets
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors import SafetensorError

from synth_model import models
from synth_model.config import SynthConfig
from synth_model.errors import DataError, DataWarning, SynthError
from synth_model.generate import GenerationResult, default_batch_size, generate_records
from synth_model.groups import BEGIN, END, GroupRules, KeyFactory, cap_groups, learn_keys, load_keys, save_keys
from synth_model.holdout import group_ids, split_holdout
from synth_model.privacy import dp
from synth_model.privacy.pii import PiiMapper, PiiReport, protect
from synth_model.records import (
    Unit,
    assemble_examples,
    check_fit,
    prompt_text,
    rows_to_texts,
    schema_texts,
    sequence_len,
    unit_token_cap,
)
from synth_model.schema import TableSchema, infer_schema, numbers_learned_as_text
from synth_model.tables import as_arrow, writable_parent
from synth_model.train import ProgressFn, train

CONFIG_FILE, SCHEMA_FILE, METRICS_FILE, HOLDOUT_FILE = (
    "config.yaml",
    "schema.json",
    "training_metrics.json",
    "holdout.parquet",
)
MODEL_DIR, ADAPTER_DIR = "model", "adapter"
KEYS_FILE = "group_keys.json"  # formats (and hashes, not values) of the entity keys
PII_FILE = "pii_report.json"  # what PII detection found in the training rows and what was replaced
UNIT = "__unit"  # hidden column: the training group of each row (an entity, or a window of one)
TINY_EPOCHS = 12  # "auto" records to sample for the tiny model, in passes over the training rows
TINY_MAX_RECORDS = 150_000
LORA_EPOCHS = 1
MODEL_FORMAT = 2  # 2: units isolated in training (one unit per sampled row); folders of another format retrain


class Synthesizer:
    """Fit a language model to a table and sample new valid records from it."""

    def __init__(self, config: SynthConfig | dict | str | Path | None = None, pii_mapper: PiiMapper | None = None):
        """`pii_mapper`: share one across fits so a real value gets the same fake in every table of a run."""
        self.config = SynthConfig.from_any(config)
        self.pii_mapper = pii_mapper
        self.pii: dict = {}
        self.schema: TableSchema | None = None
        self.loaded: models.LoadedModel | None = None
        self.holdout: pa.Table | None = None
        self.metrics: dict = {}
        self.prompt_ids: list[int] = []
        self.max_unit_tokens = 0
        self.keys: list[KeyFactory] = []
        self._settled: list[tuple[object, str, object]] = []  # (config section, key, value before the fit)

    # ------------------------------------------------------------------ fit
    def fit(self, table, config: SynthConfig | dict | str | Path | None = None, progress: ProgressFn | None = None):
        """Hold out rows, learn the schema and tokenizer, pack examples and train. Returns self."""
        for section, key, before in reversed(self._settled):  # a refit decides its "auto"s afresh
            setattr(section, key, before)
        self._settled = []
        if config is not None:
            self.config = SynthConfig.from_any(config)
        cfg = self.config
        started = time.perf_counter()
        table = as_arrow(table)
        _check_columns(table, cfg)
        # on the input as given (rows numbered as the caller numbers them); it also refuses columns the
        # engine cannot model before anything else runs
        doubts = numbers_learned_as_text(table, infer_schema(table, layouts=False))
        for doubt in doubts:
            warnings.warn(doubt, DataWarning, stacklevel=2)
        group_by = cfg.data.group_training_examples_by
        table = _with_units(_ordered(table, cfg), cfg)
        train_rows, holdout = split_holdout(table, cfg.data)
        unit_ids = train_rows.column(UNIT).to_numpy() if group_by else None
        train_rows, holdout = (t.drop_columns([UNIT]) if group_by else t for t in (train_rows, holdout))
        # PII is replaced in the training rows only: the holdout stays real so the privacy measures stay honest.
        keys_kept = (group_by or []) + (cfg.data.order_training_examples_by or [])
        train_rows, pii = protect(train_rows, cfg.replace_pii, keys_kept, self.pii_mapper)
        # learned from the training rows as the model sees them: no held-out value (a category, a
        # maximum) and no real PII value replaced by a fake reaches the schema, grammar or tokenizer
        schema = infer_schema(train_rows)
        n_groups = int(np.unique(unit_ids).size) if group_by else 0
        keys = learn_keys(train_rows, group_by, n_groups, holdout) if group_by else []
        modelled = schema.without(k.column for k in keys)  # entity keys are made afresh, not modelled
        texts = rows_to_texts(train_rows, modelled)
        device, dtype = models.resolve_device(cfg.training.device)
        private = cfg.privacy.dp_enabled
        torch.manual_seed(cfg.data.random_state)  # the initial weights too (tiny model, LoRA adapters)
        if cfg.training.pretrained_model == "tiny":
            markers = [f"{BEGIN}\n{END}\n"] * n_groups
            # With DP the vocabulary comes from the schema, so rare strings in the rows cannot shape it.
            corpus = schema_texts(modelled) if private else texts
            kv_heads = models.kv_heads_of(cfg.training.tiny, grouped=bool(group_by))
            self._settle(cfg.training.tiny, "num_kv_heads", kv_heads)
            loaded = models.build_tiny(cfg.training, corpus + [prompt_text(modelled)] + markers)
        else:
            loaded = models.load_pretrained(cfg.training, dtype)
        tok = loaded.tokenizer
        prompt_ids = tok(prompt_text(modelled), add_special_tokens=False)["input_ids"]
        units = _units(tok, texts, unit_ids)
        tiny = cfg.training.pretrained_model == "tiny"
        check_fit(units, len(prompt_ids), loaded.context_length, grouped=bool(group_by), tiny=tiny)
        self._resolve(units, len(prompt_ids), loaded, len(texts))
        rng = np.random.default_rng(cfg.data.random_state)
        val_units: list[Unit] = []
        if cfg.training.validation_ratio > 0:
            order = rng.permutation(len(units))
            n_val = max(1, int(len(units) * cfg.training.validation_ratio))
            val_units = [units[i] for i in order[:n_val]]
            units = [units[i] for i in order[n_val:]]
        pack = dict(
            prompt_ids=prompt_ids,
            eos_id=tok.eos_token_id,
            context=loaded.context_length,
            max_units=cfg.data.max_sequences_per_example,
        )
        if private:  # one unit per example, each exactly once: the dataset that Poisson sampling draws from
            n_train = sum(u.n_records for u in units)
            examples = assemble_examples(units, records_to_sample=n_train, rng=rng, **pack)
            epochs = cfg.training.num_input_records_to_sample / n_train
            dp_plan = dp.plan(cfg.privacy, len(units), epochs, grouped=bool(group_by))
            self._settle(cfg.privacy, "delta", dp_plan.delta)
        else:
            examples = assemble_examples(
                units, records_to_sample=cfg.training.num_input_records_to_sample, rng=rng, **pack
            )
            dp_plan = None
        val_examples = (
            assemble_examples(val_units, records_to_sample=sum(u.n_records for u in val_units), rng=rng, **pack)
            if val_units
            else []
        )
        if dtype != torch.float32 and not loaded.is_lora:
            loaded.model.to(dtype)
        metrics = train(
            loaded.model,
            examples,
            val_examples,
            cfg.training,
            tok.pad_token_id,
            device,
            cfg.data.random_state,
            progress,
            dp=dp_plan,
        )
        self.schema, self.loaded, self.holdout, self.keys, self.pii = schema, loaded, holdout, keys, pii
        self.prompt_ids = prompt_ids
        self.max_unit_tokens = unit_token_cap(units, loaded.context_length - len(prompt_ids) - 1)
        generation = cfg.generation
        if generation.batch_size == "auto" and generation.backend == "engine":  # vLLM sizes its own batch
            cache_len = sequence_len(len(prompt_ids), self.max_unit_tokens)
            self._settle(generation, "batch_size", default_batch_size(loaded.model, cache_len, device))
        self.metrics = {
            **metrics,
            "rows_in": table.num_rows,
            "training_rows": train_rows.num_rows,
            "holdout_rows": holdout.num_rows,
            "tokens_per_record": float(np.mean([len(u.ids) / u.n_records for u in units])),
            **(_group_metrics(units) if group_by else {}),
            "max_unit_tokens": self.max_unit_tokens,
            **({"pii": _pii_metrics(pii)} if pii else {}),
            **(
                {"dp": {**dp_plan.as_dict(), "epsilon_spent": dp.spent_epsilon(dp_plan, metrics["steps"])}}
                if private
                else {}
            ),
            "fit_seconds": time.perf_counter() - started,
            "device": str(device),
            **({"warnings": doubts} if doubts else {}),
        }
        return self

    def _settle(self, section, key: str, value) -> None:
        """Set a config value to the one this fit uses (an "auto" resolved), remembering the setting."""
        self._settled.append((section, key, getattr(section, key)))
        setattr(section, key, value)

    def _resolve(
        self,
        units: list[Unit],
        prompt_len: int,
        loaded: models.LoadedModel,
        n_records: int,
    ) -> None:
        """Replace the data and training "auto"s with concrete values, once, from the data and the model
        (the sampling batch is set once the unit cap is known, after training)."""
        data, training = self.config.data, self.config.training
        if self.config.privacy.dp_enabled:
            # record-level (group-level) privacy: one unit per example
            self._settle(data, "max_sequences_per_example", 1)
        if data.max_sequences_per_example == "auto":
            mean_tokens = float(np.mean([len(u.ids) for u in units]))
            per_example = max(1, int((loaded.context_length - prompt_len - 1) / mean_tokens))
            self._settle(data, "max_sequences_per_example", per_example)
        if training.num_input_records_to_sample == "auto":
            epochs = LORA_EPOCHS if loaded.is_lora else TINY_EPOCHS
            records = min(n_records * epochs, max(TINY_MAX_RECORDS, n_records))
            self._settle(training, "num_input_records_to_sample", records)
        if training.learning_rate == "auto":
            self._settle(training, "learning_rate", 5e-4 if loaded.is_lora else 2e-3)

    # ------------------------------------------------------------- generate
    def generate(self, num_records: int | None = None, progress: ProgressFn | None = None) -> pa.Table:
        return self.generate_with_stats(num_records, progress).table

    def generate_with_stats(
        self, num_records: int | None = None, progress: ProgressFn | None = None
    ) -> GenerationResult:
        if self.loaded is None or self.schema is None:
            raise SynthError("the synthesizer is not fitted: call fit() or Synthesizer.load(dir) first")
        data = self.config.data
        grouped = data.group_training_examples_by
        rules = (
            GroupRules.of(grouped, data.order_training_examples_by, self.keys, self.config.generation)
            if grouped
            else None
        )
        return generate_records(
            self.loaded.model,
            self.loaded.tokenizer,
            self.schema.without(k.column for k in self.keys),
            self.prompt_ids,
            self.max_unit_tokens,
            self.config.generation,
            num_records=num_records,
            progress=progress,
            records_per_unit=self.metrics.get("records_per_group_mean", 1.0),
            max_group_records=self.metrics.get("records_per_group_max"),
            groups=rules,
            keys=self.keys,
            output_schema=self.schema,
        )

    def evaluate(self, real, synthetic, target: str | None = None, quasi_identifiers: list[str] | None = None) -> dict:
        """Quality and privacy of `synthetic` against the real table this model was fitted on.

        Training rows are `real` minus the model's holdout; the holdout is the unseen reference.
        """
        from synth_model.evaluate.report import evaluate, training_rows
        from synth_model.evaluate.sequences import sequence_stats

        if self.holdout is None:
            raise SynthError("the synthesizer is not fitted: call fit() or Synthesizer.load(dir) first")
        real, synthetic = as_arrow(real), as_arrow(synthetic)
        for name, table in (("real", real), ("synthetic", synthetic)):
            missing = [c for c in self.holdout.column_names if c not in table.column_names]
            if missing:
                raise DataError(f"the {name} table lacks column(s) {missing} that the model was trained on")
        if target is not None and target not in self.holdout.column_names:
            raise DataError(f"target column '{target}' is not in the table; columns: {self.holdout.column_names}")
        if synthetic.num_rows == 0:
            raise DataError("the synthetic table has no rows: generate records to evaluate first")
        for name, table in (("real", real), ("synthetic", synthetic)):
            if target is not None and table.column(target).null_count == table.num_rows:
                raise DataError(f"target column '{target}' has no values in the {name} table: choose another target")
        made = [k.column for k in self.keys]  # entity keys are new values by design: not compared
        columns = [c for c in self.holdout.column_names if c not in made]
        training = training_rows(real.select(columns), self.holdout.select(columns))
        if self.holdout.num_rows == 0 or training.num_rows == 0:
            raise DataError(
                "evaluation needs the model's holdout rows and the real training rows: fit with data.holdout > 0 "
                "and pass the table the model was fitted on"
            )
        report = PiiReport.from_dict(self.pii["report"]) if self.pii else None
        group_by = self.config.data.group_training_examples_by
        sequences = (
            sequence_stats(
                _ordered(real, self.config), synthetic, group_by, self.config.data.order_training_examples_by
            )
            if group_by
            else None
        )
        return evaluate(
            training,
            self.holdout.select(columns),
            synthetic.select(columns),
            target,
            quasi_identifiers,
            report,
            sequences,
        )

    # ---------------------------------------------------------- save / load
    def save(self, directory: str | Path) -> Path:
        """Write every artifact into `directory` atomically (a temp folder renamed into place)."""
        if self.loaded is None or self.schema is None:
            raise SynthError("nothing to save: call fit() first")
        target = model_folder_target(directory)
        staging = target.parent / f".{target.name}.{secrets.token_hex(6)}"
        staging.mkdir()  # the umask's permissions, where mkdtemp would make the folder private
        try:
            self.config.save(staging / CONFIG_FILE)
            self.schema.save(staging / SCHEMA_FILE)
            sub = staging / (ADAPTER_DIR if self.loaded.is_lora else MODEL_DIR)
            self.loaded.model.save_pretrained(sub)
            self.loaded.tokenizer.save_pretrained(sub)
            for weights in sub.glob("*.safetensors"):  # safetensors writes them 0600: match the files beside
                shutil.copymode(staging / CONFIG_FILE, weights)
            pq.write_table(self.holdout, staging / HOLDOUT_FILE)
            if self.keys:
                save_keys(self.keys, staging / KEYS_FILE)
            if self.pii:
                (staging / PII_FILE).write_text(json.dumps(self.pii, indent=2))
            meta = {
                "format": MODEL_FORMAT,
                "prompt_ids": self.prompt_ids,
                "max_unit_tokens": self.max_unit_tokens,
                "context_length": self.loaded.context_length,
            }
            (staging / METRICS_FILE).write_text(json.dumps({**self.metrics, **meta}, indent=2))
            # Swap by renames: the earlier folder exists until the new one is in place.
            previous = target.with_name(f".{target.name}.previous") if target.exists() else None
            if previous:
                shutil.rmtree(previous, ignore_errors=True)
                target.rename(previous)
            staging.rename(target)
            if previous:
                shutil.rmtree(previous)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return target

    @classmethod
    def load(cls, directory: str | Path) -> Synthesizer:
        """A saved model folder; a missing or damaged file is one error naming the folder (never a hub lookup)."""
        path = Path(directory)
        if not (path / CONFIG_FILE).is_file():
            raise SynthError(f"{path} is not a model folder (no {CONFIG_FILE}); pass the output of `synth train`")
        try:
            return cls._read(path)
        except SynthError:
            raise
        except (OSError, ValueError, KeyError, pa.ArrowException, SafetensorError) as err:
            detail = (str(err).strip().splitlines() or [""])[0]
            raise SynthError(
                f"model folder {path} is incomplete or damaged ({type(err).__name__}: {detail}); train it again "
                "(`synth train`, or materialize the model asset)"
            ) from None

    @classmethod
    def _read(cls, path: Path) -> Synthesizer:
        self = cls(path / CONFIG_FILE)
        self.schema = TableSchema.load(path / SCHEMA_FILE)
        self.holdout = pq.read_table(path / HOLDOUT_FILE)
        self.keys = load_keys(path / KEYS_FILE)
        self.pii = json.loads((path / PII_FILE).read_text()) if (path / PII_FILE).is_file() else {}
        stored = json.loads((path / METRICS_FILE).read_text())
        if (found := stored.pop("format", 1)) != MODEL_FORMAT:
            newer = isinstance(found, int) and found > MODEL_FORMAT
            remedy = (
                "load it with the newer synth_model that wrote it"
                if newer
                else "train it again (`synth train`, or materialize the model asset)"
            )
            raise SynthError(f"{path} holds a model of format {found!r}; this version reads {MODEL_FORMAT}: {remedy}")
        self.prompt_ids, self.max_unit_tokens = stored.pop("prompt_ids"), stored.pop("max_unit_tokens")
        context = stored.pop("context_length")
        self.metrics = stored
        device, dtype = models.resolve_device(self.config.training.device)
        if (path / ADAPTER_DIR).is_dir():
            from peft import PeftModel

            base, tokenizer = models.load_base(
                self.config.training.pretrained_model, self.config.training.rope_scaling_factor, dtype
            )
            model = PeftModel.from_pretrained(base, path / ADAPTER_DIR)
            self.loaded = models.LoadedModel(model, tokenizer, context, is_lora=True)
        else:
            from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

            if not (path / MODEL_DIR).is_dir():
                raise FileNotFoundError(f"no {MODEL_DIR}/ folder")
            model = AutoModelForCausalLM.from_pretrained(path / MODEL_DIR, dtype=dtype, local_files_only=True)
            tokenizer = PreTrainedTokenizerFast.from_pretrained(path / MODEL_DIR, local_files_only=True)
            self.loaded = models.LoadedModel(model, tokenizer, context, is_lora=False)
        self.loaded.model.to(device).eval()
        return self


def model_folder_target(directory: str | Path) -> Path:
    """Where a model folder may be saved: a new path, an empty folder or an earlier model folder (it is
    replaced), never another file or folder; its parent is created. Checked before training, too."""
    target = Path(directory)
    if target.is_file() or target.is_dir() and any(target.iterdir()) and not (target / CONFIG_FILE).is_file():
        kind = "a file" if target.is_file() else "a folder that is not a model folder"
        raise SynthError(f"{target} exists and is {kind}, which saving would replace: choose another path or remove it")
    writable_parent(target)
    return target


def _check_columns(table: pa.Table, cfg: SynthConfig) -> None:
    repeated = sorted({c for c in table.column_names if table.column_names.count(c) > 1})
    if repeated:
        raise DataError(f"column name(s) {repeated} appear more than once in the input; rename or drop the copies")
    for key in ("group_training_examples_by", "order_training_examples_by"):
        missing = [c for c in getattr(cfg.data, key) or [] if c not in table.column_names]
        if missing:
            raise DataError(
                f"data.{key} names column(s) {missing} that the table does not have; available: {table.column_names}"
            )
    groups = cfg.data.group_training_examples_by or []
    if groups and all(c in groups for c in table.column_names):
        raise DataError(
            f"the table has no columns to learn besides the group column(s) {groups}: "
            "add the columns that describe each record"
        )
    for column in groups:
        if nulls := table.column(column).null_count:
            raise DataError(
                f"group column '{column}' (group_by, data.group_training_examples_by) is NULL in {nulls} row(s), "
                f"which would be learned as one entity: drop those rows or give them keys (e.g. WHERE {column} "
                "IS NOT NULL in the preparation SQL)"
            )


def _ordered(table: pa.Table, cfg: SynthConfig) -> pa.Table:
    """Rows sorted by group, then by the order columns, so each entity's events read in order."""
    keys = (cfg.data.group_training_examples_by or []) + (cfg.data.order_training_examples_by or [])
    return table.sort_by([(k, "ascending") for k in keys]) if keys else table


def _with_units(table: pa.Table, cfg: SynthConfig) -> pa.Table:
    """Grouped rows with their training group in UNIT, after capping rows per group if asked."""
    gids = group_ids(table, cfg.data.group_training_examples_by)
    if gids is None:
        return table
    keep, units = cap_groups(gids, cfg.data.max_records_per_group, cfg.data.group_cap_strategy)
    return table.append_column(UNIT, pa.array(units)).filter(pa.array(keep))


def _units(tokenizer, texts: list[str], gids: np.ndarray | None) -> list[Unit]:
    """Tokenize each record; with groups, one unit per group between marker lines (records in order)."""
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    if gids is None:
        return [Unit(ids, 1, i) for i, ids in enumerate(encoded)]
    begin, end = (tokenizer(m + "\n", add_special_tokens=False)["input_ids"] for m in (BEGIN, END))
    units: dict[int, Unit] = {}
    for i, (gid, ids) in enumerate(zip(gids.tolist(), encoded, strict=True)):
        unit = units.setdefault(gid, Unit(list(begin), 0, i))
        unit.ids.extend(ids)
        unit.n_records += 1
    for unit in units.values():
        unit.ids.extend(end)
    return list(units.values())


def _pii_metrics(pii: dict) -> dict:
    report, replaced = pii["report"], pii["replaced"]
    return {
        "columns_detected": len(report["columns"]),
        "text_columns_detected": len({f["column"] for f in report["text"]}),
        "values_replaced": sum(c["values_replaced"] for c in replaced.get("columns", {}).values()),
        "text_spans_replaced": sum(sum(c["spans"].values()) for c in replaced.get("text", {}).values()),
    }


def _group_metrics(units: list[Unit]) -> dict:
    sizes = np.array([u.n_records for u in units])
    return {
        "groups": len(units),
        "records_per_group_mean": float(sizes.mean()),
        "records_per_group_max": int(sizes.max()),
        "largest_group_tokens": max(len(u.ids) for u in units),
    }
