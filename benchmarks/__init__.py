"""Benchmark scripts run from a checkout: `python -m benchmarks.suite [--quick]`.

The shared code is `keras_deconvnet.benchmarking` (installed with the package, used by
`deconvnet benchmark` too); `forward`, `data_pipeline` and `flops` are focused entry
points kept for their earlier command lines.
"""
