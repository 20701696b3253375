"""Sums of kernel costs, by component or by layer."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dartsim.workload.kernels import Component, Kernel, TensorKind


@dataclass(frozen=True)
class CostTotals:
    """Summed traffic and arithmetic of a set of kernels (bytes and FLOP, SI)."""

    bytes: int = 0
    weight_bytes: int = 0
    activation_bytes: int = 0
    kv_cache_bytes: int = 0
    flops_matmul: int = 0
    flops_vector: int = 0

    @property
    def flops(self) -> int:
        return self.flops_matmul + self.flops_vector

    def __add__(self, other: CostTotals) -> CostTotals:
        return CostTotals(
            bytes=self.bytes + other.bytes,
            weight_bytes=self.weight_bytes + other.weight_bytes,
            activation_bytes=self.activation_bytes + other.activation_bytes,
            kv_cache_bytes=self.kv_cache_bytes + other.kv_cache_bytes,
            flops_matmul=self.flops_matmul + other.flops_matmul,
            flops_vector=self.flops_vector + other.flops_vector,
        )

    @classmethod
    def of(cls, kernel: Kernel) -> CostTotals:
        return cls(
            bytes=kernel.bytes,
            weight_bytes=kernel.bytes_of_kind(TensorKind.WEIGHT),
            activation_bytes=kernel.bytes_of_kind(TensorKind.ACTIVATION),
            kv_cache_bytes=kernel.bytes_of_kind(TensorKind.KV_CACHE),
            flops_matmul=kernel.flops_matmul,
            flops_vector=kernel.flops_vector,
        )


def total(kernels: Iterable[Kernel]) -> CostTotals:
    """Sum over all kernels."""
    result = CostTotals()
    for kernel in kernels:
        result = result + CostTotals.of(kernel)
    return result


def totals_by_component(kernels: Iterable[Kernel]) -> dict[Component, CostTotals]:
    """Sums per component, every component present (zero when it has no kernel)."""
    result = {component: CostTotals() for component in Component}
    for kernel in kernels:
        result[kernel.component] = result[kernel.component] + CostTotals.of(kernel)
    return result
