"""The CPU lowering's kernels: the ops' forms tuned for XLA:CPU, out of the readable op files.

Each op file of `jaxconv.functional` (`conv.py`, `locally_connected.py`, `pooling.py`,
`normalization.py`) writes its reference form with `lax`/`jnp` and, when
`jaxconv.functional.lowerings.use_cpu_forms()` says so, takes its CPU form through one call
into the module of the same name here. These forms compute the same values (up to float
rounding) from matmuls and strided slices, which XLA:CPU ran 1.3-25x faster forward+backward
than its own windowed ops (`docs/performance.md`). Their tuning thresholds are constants of
their module, passed on as keyword arguments (a benchmark passes other values; nothing
reassigns them).

Modules: `conv` (banded, tiled banded and im2col convolutions, and the choice among them),
`locally_connected` (position-major batched matmul), `pooling` (max of strided slices, weighted
sums of strided slices), `normalization` (LCN's window means as banded matmuls).
"""
