"""The trace: the versioned contract between recording and simulation."""

from dartsim.trace.io import load_trace, save_trace, trace_from_raw
from dartsim.trace.schema import FORMAT_NAME, SCHEMA_VERSION
from dartsim.trace.types import Trace

__all__ = ["FORMAT_NAME", "SCHEMA_VERSION", "Trace", "load_trace", "save_trace", "trace_from_raw"]
