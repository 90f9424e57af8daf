"""Fine-tune a language model on a table and generate valid synthetic records.

from synth_model import Synthesizer
synth = Synthesizer({"generation": {"num_records": 1000}}).fit(table)
synthetic = synth.generate()
"""

from synth_model.config import SynthConfig
from synth_model.errors import ConfigError, ContextFitError, DataError, DataWarning, GenerationError, SynthError
from synth_model.synthesizer import Synthesizer

__all__ = [
    "ConfigError",
    "ContextFitError",
    "DataError",
    "DataWarning",
    "GenerationError",
    "SynthConfig",
    "SynthError",
    "Synthesizer",
]
