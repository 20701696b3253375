"""Published GEMM microbenchmarks behind the GPU presets' GEMM curve.

Azure AI-benchmarking-guide results (shared/reference/hardware.md): cuBLASLt GEMMs of
square shapes on ND H100 v5 (FP8: 1024^3 to 16384^3), ND H200 v5 (FP8 8192^3) and ND
A100 v4 (FP16 8192^3), in TFLOP/s. The H100 series fixes the shape of the curve (the tile
shape and `k_overhead`); the single H200 and A100 points fix only their asymptote, with the
H100's `k_overhead` (same library, same or older tensor cores: an assumption).
"""

from __future__ import annotations

from dartsim.calibrate.gemm_fit import GemmFit, GemmSample, fit_gemm
from dartsim.specs.dtypes import FP8, FP16, DType
from dartsim.specs.hardware import HardwareSpec
from dartsim.specs.hardware_yaml import override
from dartsim.units import TFLOP

AZURE_TFLOP_PER_S: dict[str, tuple[DType, dict[int, float]]] = {
    "h100-sxm": (FP8, {1024: 274, 2048: 1011, 4096: 1217, 8192: 1290, 16384: 1377}),
    "h200": (FP8, {8192: 1300.6}),
    "a100-sxm-80gb": (FP16, {8192: 253.7}),
}
HOPPER_TILE = (128, 256)
"""cuBLASLt's Hopper FP8/BF16 GEMM tile (128 x 256 outputs per CTA); assumption from its
kernel names (sm90_xmma_gemm_..._128x256), and the tile that fits the H100 series best."""
BACK_TO_BACK_GAP_S = 0.6e-6
"""Device-side gap between back-to-back kernels of a benchmark loop: about 0.5-0.6 us per
kernel (ahrefs/ocannl #488: 0.58 us per graph node; NVIDIA's CUDA graphs blog: a 2.9 us
kernel every 3.4 us). A property of the benchmark, not of any preset's software stack."""


def samples(device: str) -> list[GemmSample]:
    dtype, table = AZURE_TFLOP_PER_S[device]
    return [GemmSample(n, n, n, dtype, 2 * n**3 / (rate * TFLOP)) for n, rate in table.items()]


def fit_curve(hw: HardwareSpec) -> GemmFit:
    """The H100 curve: tile shape from HOPPER_TILE, asymptote and k_overhead fitted."""
    tiled = override(
        hw, {"compute.gemm.tile_m": HOPPER_TILE[0], "compute.gemm.tile_n": HOPPER_TILE[1]}, "fit"
    )
    return fit_gemm(samples("h100-sxm"), tiled, ("efficiency", "k_overhead"), BACK_TO_BACK_GAP_S)
