"""dartsim: what dynamic FFN sparsity (DART and its kin) does to an accelerator."""

__version__ = "0.1.0"
