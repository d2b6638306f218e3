"""Smoke tests of the benchmark suite at tiny sizes: structure, not speed."""

from __future__ import annotations

import argparse
import dataclasses
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_deconvnet.atomic_io import write_json
from keras_deconvnet.benchmarks import (
    config as bench_config,
)
from keras_deconvnet.benchmarks import (
    exported,
    forward,
    layers,
    machine,
    report,
    seeds,
    suite,
    torch_reference,
)
from keras_deconvnet.benchmarks.config import SuiteConfig
from keras_deconvnet.cli import benchmark as benchmark_cli


def tiny_config(**changes) -> SuiteConfig:
    config = SuiteConfig(
        sections=("matmul", "forward", "layers", "profile"),
        presets=("deconvnet_edge_small",), batches=(1,), image_size=96,
        dtypes=("float32",), modes=("function", "predict_on_batch"),
        feature_maps=((8, 8, 4), (5, 7, 3)), layer_batches=(2,), train_batch=2,
        pipeline_examples=4, exported_preset="deconvnet_edge_small",
        quantizations=("float32",), onnx=False, memory_batches=(1,),
        profile_preset="deconvnet_edge_small", profile_batch=1, warmup=1, repeats=1,
        seconds_per_figure=0.0, max_repeats=1, matmul_size=128, quick=True,
    )
    return dataclasses.replace(config, **changes)


def test_time_runs_counts_and_budget():
    calls = []
    timing = machine.time_runs(lambda: calls.append(1), warmup=2, repeats=3)
    assert len(calls) == 5 and len(timing["runs_s"]) == 3
    assert timing["min_s"] <= timing["median_s"]
    more = machine.time_runs(lambda: None, 0, 2, budget_s=1.0, max_repeats=7)
    assert len(more["runs_s"]) == 7  # the budget is not reached by no-ops


def test_conv_macs_counts_conv_transpose_and_dense():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)  # 8*8*9*3*4 = 6912
    x = keras.layers.Conv2DTranspose(2, 2, strides=2)(x)  # 8*8*4*4*2 = 2048
    x = keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(x))  # 2*5 = 10
    assert forward.conv_macs(keras.Model(inputs, x)) == 6912 + 2048 + 10


def test_reference_and_our_layers_compute_the_same_unpooling():
    x = tf.constant(np.random.default_rng(0).normal(size=(2, 6, 10, 3)), tf.float32)
    ours = layers._ours_pool_unpool()(x)
    reference = layers._reference_pool_unpool(x)
    np.testing.assert_array_equal(ours.numpy(), reference.numpy())


def test_quick_config_is_ci_sized():
    quick = SuiteConfig.quick_config()
    assert quick.quick and quick.sections == bench_config.SECTIONS
    assert quick.presets == (bench_config.EDGE,) and quick.batches == (1,)
    full = SuiteConfig()
    assert bench_config.PAPER in full.presets and 4 in full.batches


def test_run_suite_tiny_writes_tables_json_and_verdicts(tmp_path):
    lines = []
    results = suite.run_suite(tiny_config(), log=lines.append)
    assert results["machine"]["cores"] >= 1 and "tensorflow" in results["machine"]
    assert results["matmul"]["peak_gflops"] > 0
    forward = results["forward"]
    assert {(r["mode"], r["batch"]) for r in forward} == {
        ("function", 1), ("predict_on_batch", 1)}
    for row in forward:
        assert row["images_per_second"] > 0 and row["gflop_per_image"] > 0
        assert 0 < row["fraction_of_matmul"]
    assert len(results["layers"]) == 2
    assert results["layers"][1]["shape"] == [5, 7, 3]
    assert results["layers"][0]["forward_backward_ratio"] > 0
    profile = results["profile"]
    kinds = {r["name"] for r in profile["by_kind"]}
    assert "conv 3x3" in kinds and "pooling (MaxPoolWithArgmax)" in kinds
    assert abs(sum(r["share"] for r in profile["by_op_type"]) - 1) < 0.5
    verdicts = results["verdicts"]
    assert len(verdicts) == 4
    assert verdicts[1]["value"] is not None and verdicts[0]["met"] is None
    text = report.format_report(results)
    for heading in ("Forward pass", "MaxPoolWithArgmax+Unpool", "Profile", "Verdicts",
                    "NOT MEASURED", "target"):
        assert heading in text
    path = tmp_path / "out" / "bench.json"
    write_json(path, results)
    assert json.loads(path.read_text())["verdicts"][1]["name"] == verdicts[1]["name"]
    assert any(line.startswith("[forward]") for line in lines)


def test_verdicts_met_and_not_met():
    results = {
        "matmul": {"peak_gflops": 100.0},
        "forward": [
            {"preset": bench_config.PAPER, "dtype": "float32", "mode": "function", "batch": 4,
             "seconds_per_batch": 2.0, "seconds_per_image": 0.5, "gflops_per_second": 80.0,
             "fraction_of_matmul": 0.8},
            {"preset": bench_config.PAPER, "dtype": "float32", "mode": "function", "batch": 1,
             "seconds_per_batch": 0.5, "seconds_per_image": 0.5, "gflops_per_second": 60.0,
             "fraction_of_matmul": 0.6},
        ],
        "layers": [{"ours_forward_backward_s": 3.0, "reference_forward_backward_s": 4.0}],
        "torch": {"rows": [{"preset": bench_config.PAPER, "batch": 1,
                            "seconds_per_image": 0.75}]},
        "exported": {"preset": "deconvnet_edge", "rows": [
            {"runtime": "keras", "variant": "float32 function", "seconds_per_image": 0.03},
            {"runtime": "litert", "variant": "int8", "seconds_per_image": 0.01},
        ]},
    }
    verdicts = report.compute_verdicts(results)
    assert [v["met"] for v in verdicts] == [True, False, True, True]
    assert verdicts[1]["value"] == pytest.approx(0.75)
    assert verdicts[2]["value"] == pytest.approx(1.5)
    assert verdicts[3]["value"] == pytest.approx(3.0)


def test_torch_absent_is_a_note(monkeypatch):
    monkeypatch.setattr(torch_reference, "torch_available", lambda: False)
    result = torch_reference.bench_torch(tiny_config())
    assert result["rows"] == [] and "bench" in result["skipped"]
    verdict = report.compute_verdicts({"matmul": {"peak_gflops": 1.0},
                                             "torch": result})[2]
    assert verdict["met"] is None and "torch" in verdict["detail"]


def _parse(*argv):
    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers(dest="command")
    benchmark_cli.add_parser(subparsers)
    return parser.parse_args(["benchmark", *argv])


def test_cli_arguments_make_the_config():
    args = _parse("--quick", "--sections", "forward", "layers", "--batches", "1", "2",
                  "--repeats", "2", "--no-bfloat16")
    config = benchmark_cli.config_from_args(args)
    assert config.quick and config.sections == ("forward", "layers")
    assert config.batches == (1, 2) and config.repeats == 2 and config.dtypes == ("float32",)
    assert args.func is benchmark_cli.run
    with pytest.raises(ValueError, match="--batches"):
        benchmark_cli.config_from_args(_parse("--batches", "0"))


def test_cli_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        _parse("--help")
    assert "Examples:" in capsys.readouterr().out


def test_cli_rejects_unknown_preset():
    with pytest.raises(ValueError, match="unknown presets"):
        benchmark_cli.run(_parse("--presets", "no_such_preset"))


@pytest.mark.slow
def test_subprocess_sections_tiny():
    config = tiny_config(sections=("training", "exported", "memory", "torch"))
    results = suite.run_suite(config, log=lambda line: None)
    assert results["training"][0]["examples_per_second"] > 0
    assert {r["stage"] for r in results["pipeline"]} == {1, 2}
    runtimes = {(r["runtime"], r["variant"]) for r in results["exported"]["rows"]}
    assert ("litert", "float32") in runtimes and ("keras", "float32 function") in runtimes
    assert results["memory"][0]["peak_mb"] >= results["memory"][0]["after_build_mb"] > 0
    if torch_reference.torch_available():
        assert results["torch"]["rows"][0]["seconds_per_image"] > 0
    else:
        assert results["torch"]["skipped"]


@pytest.mark.slow
def test_quick_suite_through_the_cli(tmp_path, capsys):
    path = tmp_path / "quick.json"
    assert benchmark_cli.run(_parse("--quick", "--json", str(path))) == 0
    results = json.loads(path.read_text())
    assert set(bench_config.SECTIONS) <= set(results)
    assert "Verdicts" in capsys.readouterr().out


def test_exported_section_times_the_integer_int8_file():
    """The int8 row times the file `deconvnet export` writes (uint8 pixels in, every op
    integer) and the section and its verdict name the CPU."""
    results = {"machine": machine.machine_info(), "config": {}}
    results["exported"] = exported.bench_exported(
        tiny_config(quantizations=("int8",)), log=lambda line: None
    )
    rows = {(r["runtime"], r["variant"]): r for r in results["exported"]["rows"]}
    int8 = rows[("litert", "int8")]
    assert int8["integer_ops"] == 1.0 and int8["seconds_per_image"] > 0
    assert int8["speedup_vs_keras_float32"] > 0
    cpu = results["exported"]["cpu"]
    assert "int8 dot products:" in cpu and cpu == machine.machine_info()["cpu"]
    verdict = report.compute_verdicts(results)[3]
    assert verdict["target"] == 2.5 and cpu in verdict["detail"]


def test_opt_in_sections_are_not_run_by_default():
    assert set(bench_config.OPT_IN_SECTIONS).isdisjoint(SuiteConfig().sections)
    with pytest.raises(ValueError, match="Unknown sections"):
        suite.run_suite(tiny_config(sections=("nope",)))


def test_cli_arguments_of_the_opt_in_sections():
    args = _parse("--sections", "serving", "soak", "seeds", "--concurrency", "2", "8",
                  "--requests", "40", "--model-base", "/models", "--model-name", "m",
                  "--server-arg=--no-batching", "--no-grpc", "--seeds", "3", "4")
    config = benchmark_cli.config_from_args(args)
    assert config.sections == ("serving", "soak", "seeds")
    serving = config.serving
    assert serving.concurrency == (2, 8) and serving.requests == serving.soak_requests == 40
    assert serving.model_base == "/models" and serving.model_name == "m"
    assert serving.server_args == ("--no-batching",) and not serving.grpc
    assert config.seeds.seeds == (3, 4)
    with pytest.raises(ValueError, match="--concurrency"):
        benchmark_cli.config_from_args(_parse("--concurrency", "0"))


def test_proposals_section_tiny():
    config = tiny_config(sections=("proposals",), proposals=bench_config.ProposalsConfig(
        "deconvnet_edge_small", counts=(1, 3), batches=(1, 3)))
    results = suite.run_suite(config, log=lambda line: None)
    rows = results["proposals"]["rows"]
    assert [(r["proposals"], r["batch_size"]) for r in rows] == [(1, 1), (3, 1), (3, 3)]
    assert all(r["seconds_per_image"] > 0 and r["proposal_generation_ms"] > 0 for r in rows)
    assert "Instance-wise inference" in report.format_report(results)


def test_seed_table_has_mean_and_sample_spread():
    run = {settings: {m: 0.5 for m in seeds.METHODS} for settings in ("authors", "quickstart")}
    other = {settings: {m: 0.7 for m in seeds.METHODS} for settings in ("authors", "quickstart")}
    lines = seeds.format_seeds({"methods": list(seeds.METHODS), "runs": {"0": run, "1": other}})
    assert len(lines) == 1 + 2 * len(seeds.METHODS)
    assert lines[1].split()[-2:] == ["60.0", "14.1"]  # mean, std with ddof=1


def test_soak_verdict_follows_its_outcome():
    soak = {"requests": 10, "outcomes": {"ok": 9, "wrong_answer": 1}, "server_alive": True,
            "server_traceback": None, "passed": False}
    verdict = report.compute_verdicts({"soak": soak})[-1]
    assert verdict["value"] == 1 and verdict["met"] is False


@pytest.mark.slow
def test_serving_section_tiny():
    config = tiny_config(sections=("serving",), serving=bench_config.ServingConfig(
        preset="deconvnet_edge_small", concurrency=(1, 2), requests=4))
    results = suite.run_suite(config, log=lambda line: None)
    rows = results["serving"]["rows"]
    assert {r["concurrency"] for r in rows} == {1, 2}
    assert all(r["errors"] == 0 and r["requests_per_s"] > 0 for r in rows)
    assert "Local server" in report.format_report(results)
