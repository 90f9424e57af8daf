"""Run configuration: sections `data`, `replace_pii`, `training`, `privacy`, `generation`.

Field names follow the established tabular fine-tuning vocabulary (NeMo Safe Synthesizer / Gretel) so
users can carry configs across. Values may be "auto"; `resolve` fixes them once from the data, and
the resolved config is what gets saved with every artifact.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from synth_model.errors import ConfigError

Auto = Literal["auto"]


def _at_least_one(value: int | str) -> int | str:
    if value != "auto" and value < 1:
        raise ValueError("must be >= 1 or 'auto'")
    return value


def _open_unit(value: float | str) -> float | str:
    if value != "auto" and not 0 < value < 1:
        raise ValueError("must be in (0, 1) or 'auto'")
    return value


CountOrAuto = Annotated[int | Auto, AfterValidator(_at_least_one)]
FractionOrAuto = Annotated[float | Auto, AfterValidator(_open_unit)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    holdout: float = Field(0.05, ge=0, description="fraction (<1) or number (>=1) of rows held out")
    max_holdout: int = Field(2000, ge=0, description="upper bound on held-out rows")
    random_state: int = Field(42, description="seed for the holdout split, sampling and training")
    group_training_examples_by: list[str] | None = None
    order_training_examples_by: list[str] | None = None
    max_sequences_per_example: CountOrAuto = "auto"
    max_records_per_group: int | None = Field(None, ge=1, description="cap on records per group (long histories)")
    group_cap_strategy: Literal["most_recent", "windows"] = "most_recent"

    @field_validator("group_training_examples_by", "order_training_examples_by", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("holdout")
    @classmethod
    def _fraction_or_count(cls, value: float) -> float:
        if value >= 1 and not value.is_integer():
            raise ValueError("must be a fraction below 1 or a whole number of rows")
        return value

    @model_validator(mode="after")
    def _order_apart_from_groups(self) -> DataConfig:
        both = [c for c in self.order_training_examples_by or [] if c in (self.group_training_examples_by or [])]
        if both:
            raise ValueError(
                f"order_training_examples_by repeats the group column(s) {both}, which hold one value per "
                "group: order by columns that change within a group (a date, a sequence number), or leave it unset"
            )
        return self


class TinyModelConfig(_Section):
    """Shape of the from-scratch Llama model used when `pretrained_model` is "tiny"."""

    hidden_size: int = Field(192, ge=16, le=4096)
    num_layers: int = Field(4, ge=1, le=48)
    num_heads: int = Field(6, ge=1, le=64)
    num_kv_heads: CountOrAuto = Field(
        "auto",
        description="key/value heads, each shared by num_heads / num_kv_heads query heads; "
        "auto: up to 6, 3 for grouped tables",
    )
    vocab_size: int = Field(2000, ge=300, le=65536)
    context_length: int = Field(512, ge=64, le=32768)


class TrainingConfig(_Section):
    pretrained_model: str = Field("tiny", description="'tiny', 'smollm2-135m', a local dir or a hub id")
    num_input_records_to_sample: CountOrAuto = "auto"
    batch_size: int = Field(4, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    learning_rate: FractionOrAuto = "auto"
    lr_scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = Field(0.05, ge=0, le=0.5)
    weight_decay: float = Field(0.01, ge=0, le=1)
    lora_r: int = Field(32, ge=1, le=1024)
    lora_alpha_over_r: float = Field(1.0, gt=0)
    lora_target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj"]
    rope_scaling_factor: float = Field(1.0, ge=1, le=6)
    validation_ratio: float = Field(0.0, ge=0, le=0.5)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    tiny: TinyModelConfig = TinyModelConfig()


class GenerationConfig(_Section):
    num_records: int = Field(1000, ge=1)
    temperature: float = Field(1.0, gt=0, le=5)
    top_p: float = Field(1.0, gt=0, le=1)
    repetition_penalty: float = Field(1.0, gt=0, le=5)
    patience: int = Field(3, ge=1)
    invalid_fraction_threshold: float = Field(0.8, gt=0, le=1)
    use_structured_generation: bool = Field(True, description="grammar-constrained sampling: only well-formed records")
    batch_size: CountOrAuto = "auto"
    workers: CountOrAuto = Field(
        "auto", description="sampling processes on a CPU, one thread each; auto: one per core, >= 250 records each"
    )
    backend: Literal["engine", "vllm"] = Field(
        "engine", description="engine (CPU or GPU, this package's sampler) or vllm (GPU, the `vllm` extra)"
    )
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="weight matmuls while sampling; auto = bfloat16 on CPUs with bf16 instructions"
    )
    seed: int | None = Field(None, ge=0, lt=2**63)
    # grouped tables: relaxations of "a group is valid only if ..." (all off by default)
    group_by_accept_no_delineator: bool = False  # accept records outside begin/end markers as one group
    group_by_ignore_invalid_records: bool = False  # drop invalid records instead of the whole group
    group_by_fix_non_unique_value: bool = False  # give every record the group's first key instead of rejecting
    group_by_fix_unordered_records: bool = False  # sort records by order_training_examples_by instead


PII_ENTITIES = (
    "email",
    "phone",
    "credit_card",
    "ssn",
    "iban",
    "ip_address",
    "street_address",
    "postcode",
    "date_of_birth",
    "person_name",
)
PiiEntity = Literal[PII_ENTITIES]


class ReplacePiiConfig(_Section):
    """PII found in the training rows is replaced by consistent fakes before the model sees it."""

    enabled: bool = True
    entities: list[PiiEntity] = list(PII_ENTITIES)
    force_columns: dict[str, PiiEntity] = Field({}, description="column -> entity, replaced whatever detection says")
    skip_columns: list[str] = Field([], description="columns never detected nor replaced")
    locale: str = Field("en_US", description="Faker locale of the replacement values")
    min_share: float = Field(0.5, gt=0, le=1, description="share of a column's values that must match an entity")
    replace_keys: bool = Field(False, description="also replace PII in group/order key columns")


class PrivacyConfig(_Section):
    """Differential privacy (DP-SGD): per-sample gradient clipping and Gaussian noise."""

    dp_enabled: bool = False
    epsilon: float = Field(8.0, gt=0, le=100)
    delta: FractionOrAuto = Field("auto", description="'auto' = 1/n^1.2 (n = records, or groups when grouped)")
    per_sample_max_grad_norm: float = Field(1.0, gt=0)
    expected_batch_size: CountOrAuto = Field(
        "auto", description="records (groups) per noisy step; 'auto' = min(256, n/10)"
    )


class SynthConfig(_Section):
    data: DataConfig = DataConfig()
    replace_pii: ReplacePiiConfig = ReplacePiiConfig()
    training: TrainingConfig = TrainingConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    generation: GenerationConfig = GenerationConfig()

    @model_validator(mode="after")
    def _privacy_per_entity(self) -> SynthConfig:
        data = self.data
        if self.privacy.dp_enabled and data.group_cap_strategy == "windows" and data.max_records_per_group:
            raise ValueError(
                "privacy.dp_enabled with data.group_cap_strategy: windows would cut an entity's long history "
                "into several training units, so epsilon would hold per window, not per entity: use "
                "group_cap_strategy: most_recent (one unit per entity) with differential privacy"
            )
        return self

    @classmethod
    def from_any(cls, source: SynthConfig | dict | str | Path | None) -> SynthConfig:
        """Build from a config object, a dict, a YAML file path or None (all defaults)."""
        if source is None:
            return cls()
        if isinstance(source, SynthConfig):
            return source.model_copy(deep=True)
        if isinstance(source, (str, Path)):
            path = Path(source)
            if not path.is_file():
                raise ConfigError(f"config file {path} does not exist; pass a YAML file path")
            try:
                source = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError as err:
                raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
            if not isinstance(source, dict):
                raise ConfigError(f"config file {path} must hold a mapping of sections")
        try:
            return cls.model_validate(source)
        except ValidationError as err:
            loc = err.errors()[0]["loc"]
            section = str(loc[0]) if loc else None
            raise ConfigError("invalid config: " + describe_errors(err, model=cls), section) from None

    def dump(self) -> dict:
        return self.model_dump(mode="json")

    def save(self, path: Path) -> None:
        path.write_text(yaml.safe_dump(self.dump(), sort_keys=False))


def describe_errors(
    err: ValidationError, noun: str = "config key", show_input: bool = True, model: type[BaseModel] | None = None
) -> str:
    """One line naming every invalid key and what is wrong with it (also used for synth.yaml).

    With the validated `model`, an unknown key is matched against the keys allowed where it stands.
    """
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(e["loc"][-1]), _keys_at(model, e["loc"][:-1]), n=1)
            hint = f"did you mean '{close[0]}'?" if close else "remove it or check its spelling"
            lines.append(f"unknown {noun} '{key}': {hint}")
        elif not key:  # a rule across sections: its message names the keys
            lines.append(e["msg"].removeprefix("Value error, "))
        else:
            got = f" (got {e.get('input')!r})" if show_input else ""
            lines.append(f"{noun} '{key}': {e['msg'].removeprefix('Value error, ')}{got}")
    return "; ".join(lines)


def _keys_at(model: type[BaseModel] | None, path: tuple) -> list[str]:
    """The field names of the (nested) model that `path` leads to; none when it leads elsewhere."""
    for part in path:
        field = model.model_fields.get(str(part)) if model else None
        if field is None:
            return []
        nested = [t for t in (field.annotation, *typing.get_args(field.annotation)) if isinstance(t, type)]
        model = next((t for t in nested if issubclass(t, BaseModel)), None)
    return list(model.model_fields) if model else []
