"""Names shared by several layers, each list defined once: the trace (recording side),
the workload model and the device model (cost side) and the command line all use them.

Anything that is one layer's own vocabulary lives in that layer; only a list two
independent layers must agree on belongs here.
"""

from __future__ import annotations

PHASES = ("prefill", "decode")
"""Forward-step kinds; a trace stores a step's phase as its index in this tuple."""

WEIGHT_FORMATS = ("dense", "bitmap", "csr", "2:4")
"""How a policy's pruned decoder weights are stored (workload/sparse_storage.py)."""

MASK_APPLY_MODES = ("compact", "gather")
"""How a replayed device applies an FFN mask: compact copies the kept weights into
contiguous buffers at each mask build; gather reads the kept rows by index every step."""

ALLREDUCE_ALGORITHMS = ("ring", "tree", "two_shot", "one_shot", "auto")
"""How tensor-parallel partial sums are combined (workload/collectives.py); auto:
one-shot for messages up to a size, two-shot above (the policy of the custom all-reduce
kernels of TensorRT-LLM and vLLM)."""

LAUNCH_MODES = ("graph", "eager")
"""graph: a step's kernels replay from a recorded graph (CUDA graphs); eager: the host
issues every kernel."""
