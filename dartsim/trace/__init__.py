"""The trace: the versioned contract between recording and simulation."""

from dartsim.trace.io import load_trace, save_trace
from dartsim.trace.schema import FORMAT_NAME, PHASES, SCHEMA_VERSION
from dartsim.trace.validate import validate_trace

__all__ = ["FORMAT_NAME", "PHASES", "SCHEMA_VERSION", "load_trace", "save_trace", "validate_trace"]
