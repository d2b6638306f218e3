"""The benchmark engine behind `deconvnet benchmark` (also `python -m keras_deconvnet.benchmarks`).

Installed as `keras_deconvnet.benchmarks`; one module per section, `config` (what is
measured), `suite` (the run), `report` (tables, verdicts, JSON):

- `machine`: the CPU, timing, the float32 matmul yardstick, child processes.
- `forward`, `layers`, `training` (+ `pipelines`), `torch_reference`, `exported`,
  `memory`, `profile`: the default sections.
- `proposals`, `serving`, `soak` (+ `soak_requests`, `server_process`), `seeds`:
  opt-in sections, run when named in `--sections`.
"""
