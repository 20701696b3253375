"""How a pruned weight matrix is stored, and so what reading it from DRAM costs.

Formats (the trace's `policy.weight_format`):

- dense: every element, zeros included (an unpruned matrix, or pruning left unexploited);
- bitmap: the kept values, packed, plus one bit per element saying which are kept (the
  layout of SparTA-style and Flash-LLM "tiled-CSL"-like bitmap kernels; index cost 1/8 byte
  per element whatever the density);
- csr: the kept values, a 16-bit column index per kept value (every decoder matrix has at
  most 65,536 inputs) and a 32-bit row pointer per output row plus one;
- 2:4: half the values plus 2 bits of position metadata per kept value (NVIDIA's sparse
  tensor-core layout: a 4-bit index pair per group of four).

Density is the kept fraction; kept values are rounded up to whole elements.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dartsim.errors import UserError
from dartsim.names import WEIGHT_FORMATS
from dartsim.specs.dtypes import DType
from dartsim.workload.kernels import TensorAccess, TensorKind

BITMAP_BITS_PER_ELEMENT = 1
CSR_COLUMN_INDEX = DType("uint16", 16)
CSR_ROW_POINTER = DType("int32", 32)
TWO_FOUR_METADATA_BITS_PER_VALUE = 2
"""NVIDIA sparse MMA metadata: a 2-bit position per kept value (4 bits per group of 4)."""
TWO_FOUR_DENSITY = 0.5
BIT = DType("bit", 1)


@dataclass(frozen=True)
class WeightStorage:
    """How the decoder blocks' linear weights are stored (embeddings, norms and lm_head
    stay dense)."""

    format: str = "dense"
    density: float = 1.0

    def __post_init__(self) -> None:
        if self.format not in WEIGHT_FORMATS:
            raise UserError(f"weight format must be one of {', '.join(WEIGHT_FORMATS)}, got {self.format!r}")
        if not 0.0 < self.density <= 1.0 or math.isnan(self.density):
            raise UserError(f"weight density must lie in (0, 1], got {self.density!r}")
        if self.format == "dense" and self.density != 1.0:
            raise UserError(f"dense weight storage keeps every weight, got density {self.density}")
        if self.format == "2:4" and self.density != TWO_FOUR_DENSITY:
            raise UserError(f"2:4 storage keeps exactly half the weights, got density {self.density}")

    @property
    def sparse_2to4(self) -> bool:
        return self.format == "2:4"


def stored_weight(
    name: str, rows: int, cols: int, dtype: DType, storage: WeightStorage
) -> list[TensorAccess]:
    """The tensors read to load a [rows, cols] weight stored as `storage`."""
    numel = rows * cols
    if storage.format == "dense":
        return [TensorAccess(name, TensorKind.WEIGHT, numel, dtype)]
    kept = math.ceil(storage.density * numel)
    values = TensorAccess(name, TensorKind.WEIGHT, kept, dtype)
    if storage.format == "bitmap":
        return [
            values,
            TensorAccess(f"{name}.bitmap", TensorKind.WEIGHT, numel * BITMAP_BITS_PER_ELEMENT, BIT),
        ]
    if storage.format == "csr":
        return [
            values,
            TensorAccess(f"{name}.col_index", TensorKind.WEIGHT, kept, CSR_COLUMN_INDEX),
            TensorAccess(f"{name}.row_ptr", TensorKind.WEIGHT, rows + 1, CSR_ROW_POINTER),
        ]
    meta_bits = kept * TWO_FOUR_METADATA_BITS_PER_VALUE
    return [values, TensorAccess(f"{name}.metadata", TensorKind.WEIGHT, meta_bits, BIT)]
