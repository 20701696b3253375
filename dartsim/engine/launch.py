"""When each kernel of a step can start, under the software stack's launch rules.

- Every step first waits `launch.step_overhead_us` of host work (scheduling, inputs,
  sampling the previous token).
- graph: the step is one captured graph, issued at once after the graph's launch
  (`graph_launch_us`); consecutive kernels are `kernel_gap_us` apart on the device. A
  stack's graphs cover decode steps only unless `prefill_graphs`; other steps run eager.
- eager: the host issues kernel after kernel, `host_issue_us` each, running ahead of the
  device (asynchronous): issue cost is hidden behind kernels longer than it and exposed
  where kernels are shorter; consecutive kernels are at least `kernel_gap_us` apart.
- a framework that runs several kernels (operations) per kernel of dartsim's model,
  `ops_per_kernel` of them, pays the host issue and the gap for each: both scale by it.
- a `synchronous` host (a CPU executing its own kernels) issues the next kernel only once
  the previous one has ended: issue cost and execution add up.

Graph and synchronous steps are additive: a step takes fixed_s + the sum over kernels of
(body + overhead) - one gap. An asynchronous eager step takes, for kernel bodies b_0..b_n
(issue cost h, gap g, step overhead s):

    s + n g + max over j of ((j + 1) h - j g + b_j + ... + b_n)

(unrolling start_i = max(s + (i + 1) h, end_(i-1) + g)); `eager_step_time` evaluates it
for many (h, g) at once, which is what a fit of the launch fields needs.
"""

from __future__ import annotations

import numpy as np

from dartsim.specs.stack import StackSpec


class Launch:
    """Issue times of one step's kernels on a device running `stack` in `mode`."""

    def __init__(self, stack: StackSpec, mode: str, phase: str) -> None:
        la = stack.launch
        self.graph = mode == "graph" and (phase == "decode" or la.prefill_graphs)
        self.synchronous = la.synchronous and not self.graph
        self.ops_per_kernel = la.ops_per_kernel
        self.issue_s = la.host_issue_s * la.ops_per_kernel
        self.gap_s = la.kernel_gap_s * la.ops_per_kernel
        self.graph_launch_s = la.graph_launch_s if self.graph else 0.0
        self.fixed_s = la.step_overhead_s + self.graph_launch_s
        """Host time before the first kernel can start, besides its own issue."""
        self._host_s = la.step_overhead_s

    @property
    def additive(self) -> bool:
        """Step time is fixed_s + the sum of kernel demands - one gap (graph, synchronous)."""
        return self.graph or self.synchronous

    def start(self, index: int, prev_end: float) -> float:
        """When kernel `index` can start, given when the previous kernel ended (call in
        kernel order: an eager host keeps its own clock)."""
        gap = self.gap_s if index else 0.0
        ready = prev_end + gap
        if self.graph:
            issue = self.fixed_s
        elif self.synchronous:
            issue = max(prev_end, self.fixed_s) + self.issue_s + gap
        else:
            self._host_s += self.issue_s
            issue = self._host_s
        return max(issue, ready)

    def overhead(self, body_s: float) -> float:
        """Launch time a kernel of `body_s` costs on its own (standalone)."""
        if self.graph:
            return self.gap_s
        if self.synchronous:
            return self.issue_s + self.gap_s
        return max(self.gap_s, self.issue_s - body_s)


def eager_step_time(
    bodies: np.ndarray,
    step_overhead_s: np.ndarray | float,
    issue_s: np.ndarray | float,
    gap_s: np.ndarray | float,
) -> np.ndarray:
    """End of the last kernel of an asynchronous eager step (module docstring), for kernel
    bodies [n] and launch parameters broadcast against each other (any shape)."""
    n = len(bodies) - 1
    suffix = np.cumsum(bodies[::-1])[::-1]  # b_j + ... + b_n
    j = np.arange(n + 1, dtype=np.float64)
    h = np.asarray(issue_s, dtype=np.float64)[..., None]
    g = np.asarray(gap_s, dtype=np.float64)[..., None]
    best = np.max((j + 1) * h - j * g + suffix, axis=-1)
    return np.asarray(step_overhead_s) + n * np.asarray(gap_s) + best
