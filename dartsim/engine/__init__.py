"""The discrete-event accelerator model: decides when kernels run, never how much they
move or compute (that comes from dartsim.workload)."""
