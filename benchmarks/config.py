"""What the benchmark suite measures: `SuiteConfig`, the sections and the targets."""

from __future__ import annotations

import dataclasses
import os

# Run by default, in this order.
SECTIONS = ("matmul", "forward", "layers", "training", "torch", "exported", "memory", "profile")
# Run only when named (`--sections soak`): they start servers or train models.
OPT_IN_SECTIONS = ("proposals", "serving", "soak", "seeds", "backends")
ALL_SECTIONS = SECTIONS + OPT_IN_SECTIONS
PAPER = "deconvnet_vgg16_voc"
EDGE = "deconvnet_edge"
# The paper's pooled feature maps (input of each MaxPoolWithArgmax) at 224x224.
PAPER_FEATURE_MAPS = ((224, 224, 64), (112, 112, 128), (56, 56, 256), (28, 28, 512),
                      (14, 14, 512))
TARGETS = {
    "paper_forward_fraction_of_matmul": 0.70,
    "layers_vs_reference": 0.5,
    "speedup_vs_torch": 1.3,
    "tflite_int8_speedup": 2.5,
}


@dataclasses.dataclass
class ProposalsConfig:
    """The `proposals` section: instance-wise inference time per image.

    Args:
        preset: the DeconvNet preset; `image_size` is 96 for `deconvnet_edge_small`,
            else the suite's.
        counts: numbers of sliding-window proposals per 500x375 image.
        batches: how many crops go through the network at once.
    """

    preset: str = EDGE
    counts: tuple = (1, 10, 50)
    batches: tuple = (1, 8, 16, 50)


@dataclasses.dataclass
class ServingConfig:
    """The `serving` and `soak` sections: the local TF Serving-compatible server.

    Args:
        preset: exported untrained (speed does not depend on the weights) when no
            `model_base` is given.
        model_base: a TF Serving base directory to serve instead (`soak` only).
        model_name: the model's name under the base directory.
        concurrency: `serving`: client thread counts, one figure each; `soak`: the
            largest is the number of client threads.
        requests: requests per concurrency level (`serving`).
        soak_requests: requests in all (`soak`), drawn from a seeded mix of good and
            bad requests.
        signature: `"predict_image_bytes"` (a PNG per request) or `"serving_default"`.
        batching: start the server with request batching.
        grpc: also measure gRPC (when tensorflow-serving-api is installed).
        server_args: extra `rest_server` options, e.g. `("--no-batching",)`.
        seed: the soak's request schedule.
    """

    preset: str = EDGE
    model_base: str | None = None
    model_name: str = "deconvnet"
    concurrency: tuple = (1, 4, 16)
    requests: int = 64
    soak_requests: int = 3000
    signature: str = "predict_image_bytes"
    batching: bool = True
    grpc: bool = True
    server_args: tuple = ()
    seed: int = 0


@dataclasses.dataclass
class SeedsConfig:
    """The `seeds` section: the quickstart's claims over several seeds.

    Args:
        seeds: one quickstart DeconvNet and FCN-8s training per seed.
        val_examples: synthetic validation images each method is scored on.
        output_dir: where the models are trained (`None`: a temporary directory);
            an existing run resumes.
    """

    seeds: tuple = (0, 1, 2)
    val_examples: int = 48
    output_dir: str | None = None


@dataclasses.dataclass
class BackendsConfig:
    """The `backends` section: each installed Keras backend in its own child process.

    Args:
        presets: the configurations timed (the edge and the paper's by default).
        batches: batch sizes (1: the paper's configuration stays light on 2 cores).
        dtypes: dtype policies, e.g. `("float32", "mixed_bfloat16")`.
        timeout_s: the most one backend's child may run.
    """

    presets: tuple = (EDGE, PAPER)
    batches: tuple = (1,)
    dtypes: tuple = ("float32",)
    timeout_s: float = 1800.0


@dataclasses.dataclass
class SuiteConfig:
    """What the suite measures; `SuiteConfig.quick()` is the CI-sized version.

    Args:
        sections: which of `ALL_SECTIONS` to run (default: `SECTIONS`).
        presets: `DeconvNet` presets for `forward`, `training`, `torch` and `memory`.
        batches: batch sizes of `forward` and `torch`.
        image_size: square input size of every model.
        dtypes: `"float32"` and/or `"mixed_bfloat16"` (skipped without CPU support).
        modes: `"function"` (tf.function), `"xla"` (tf.function with
            `jit_compile=True`) and/or `"predict_on_batch"`.
        other_mode_batches: the batch sizes at which modes other than
            `"function"` are timed (`None`: all of `batches`); keeps the full run
            under 10 minutes (XLA compiles per batch size).
        feature_maps: `(height, width, channels)` inputs of the `layers` section.
        layer_batches: batch sizes of the `layers` section.
        train_batch: batch size of a training step.
        pipeline_examples: synthetic images per pass of the data pipelines.
        exported_preset: the preset exported to TFLite and ONNX.
        quantizations: TFLite files to time.
        onnx: also time ONNX Runtime.
        memory_batches: batch sizes of the `memory` section.
        profile_preset, profile_batch: the forward pass that `profile` traces.
        warmup: untimed runs before timing (a `tf.function`'s tracing call counts).
        repeats: the least number of timed runs; the median is reported.
        seconds_per_figure: more timed runs are made (up to `max_repeats`) until
            this much time is spent on one figure, so fast figures get more runs.
        max_repeats: the most timed runs of one figure.
        matmul_size: the square float32 matmul that is the yardstick.
        threads: threads for PyTorch, LiteRT and ONNX Runtime (TensorFlow uses
            all cores by default); `None`: the machine's core count.
        proposals, serving, seeds, backends: the settings of the opt-in sections.
        quick: marks a CI-sized run (reduced settings; speed verdicts are indicative).
    """

    sections: tuple = SECTIONS
    presets: tuple = (PAPER, EDGE)
    batches: tuple = (1, 4, 8)
    image_size: int = 224
    dtypes: tuple = ("float32", "mixed_bfloat16")
    modes: tuple = ("function", "xla", "predict_on_batch")
    other_mode_batches: tuple | None = (1, 4)
    feature_maps: tuple = PAPER_FEATURE_MAPS
    layer_batches: tuple = (1, 4)
    train_batch: int = 4
    pipeline_examples: int = 64
    exported_preset: str = EDGE
    quantizations: tuple = ("float32", "float16", "int8")
    onnx: bool = True
    memory_batches: tuple = (1, 8)
    profile_preset: str = PAPER
    profile_batch: int = 4
    warmup: int = 1
    repeats: int = 3
    seconds_per_figure: float = 2.0
    max_repeats: int = 20
    matmul_size: int = 2048
    threads: int | None = None
    proposals: ProposalsConfig = dataclasses.field(default_factory=ProposalsConfig)
    serving: ServingConfig = dataclasses.field(default_factory=ServingConfig)
    seeds: SeedsConfig = dataclasses.field(default_factory=SeedsConfig)
    backends: BackendsConfig = dataclasses.field(default_factory=BackendsConfig)
    quick: bool = False

    @classmethod
    def quick_config(cls) -> SuiteConfig:
        """Every section at CI size: the edge preset, few settings, 3 repeats."""
        return cls(
            presets=(EDGE,), batches=(1,), modes=("function", "xla"),
            feature_maps=((56, 56, 64), (28, 28, 128)), layer_batches=(1,),
            train_batch=2, pipeline_examples=16, quantizations=("float32", "int8"),
            memory_batches=(1,), profile_preset=EDGE, profile_batch=1, repeats=3,
            seconds_per_figure=0.3, max_repeats=10,
            proposals=ProposalsConfig("deconvnet_edge_small", (1, 10), (1, 10)),
            serving=ServingConfig(requests=16, soak_requests=240),
            seeds=SeedsConfig(seeds=(0,)),
            backends=BackendsConfig(presets=("deconvnet_edge_small",)), quick=True,
        )

    def thread_count(self) -> int:
        return int(self.threads or os.cpu_count() or 1)
