"""Errors a user can cause. Each message names the problem and the remedy; the CLI prints it as one line."""


class SynthError(Exception):
    """Base class: anything raised for bad input, config or data."""


class ConfigError(SynthError):
    """The configuration has an unknown key, a wrong type or an out-of-range value.

    `section` names the config section at fault ('training', ...) where one is, so a file that
    embeds the config (synth.yaml) can point at that section's line."""

    def __init__(self, message: str, section: str | None = None):
        super().__init__(message)
        self.section = section


class DataError(SynthError):
    """The input table cannot be used as it is (empty, unsupported column type, all-null column, ...)."""


class ContextFitError(SynthError):
    """A record (or group) does not fit the model's context window."""


class GenerationError(SynthError):
    """Generation stopped because the model keeps producing invalid records."""


class DataWarning(UserWarning):
    """The input can be used, but probably not as meant (numbers stored as text, ...)."""
