"""The stage-1 and stage-2 tf.data crop pipelines: crops per second."""

from __future__ import annotations

import statistics
import time

import tensorflow as tf

from keras_deconvnet.benchmarks.config import SuiteConfig


def pipeline_dataset(stage: int, crop_size: int, examples: int,
                     image_size: int = 128, batch: int = 32) -> tf.data.Dataset:
    """The stage-1 (object crops) or stage-2 (proposal crops) pipeline on synthetic data."""
    from keras_deconvnet.data import (
        SlidingWindowProposals,
        Stage2CropConfig,
        stage1_crops,
        stage2_crops,
        synthetic_dataset,
    )

    source = synthetic_dataset("train", examples, (image_size, image_size), seed=0)
    resize_size = round(crop_size * 250 / 224)
    if stage == 1:
        crops = stage1_crops(source, crop_size, resize_size, seed=0)
    else:
        crops = stage2_crops(source, SlidingWindowProposals(), Stage2CropConfig(
            max_per_image=8, crop_size=crop_size, resize_size=resize_size, seed=0))
    return crops.batch(batch).prefetch(tf.data.AUTOTUNE)


def crops_per_second(dataset: tf.data.Dataset, repeats: int) -> tuple[int, float]:
    """Crops per pass and the median crops/s over `repeats` passes after a warm-up."""
    def one_pass():
        start = time.perf_counter()
        count = sum(int(images.shape[0]) for images, _ in dataset)
        return count, time.perf_counter() - start

    one_pass()  # warm-up: tracing, thread pools
    runs = [one_pass() for _ in range(max(1, repeats))]
    return runs[0][0], statistics.median(count / seconds for count, seconds in runs)


def bench_pipeline(config: SuiteConfig, log=print) -> list:
    rows = []
    for stage in (1, 2):
        dataset = pipeline_dataset(stage, config.image_size, config.pipeline_examples)
        count, rate = crops_per_second(dataset, min(config.repeats, 3))
        rows.append({"stage": stage, "crop_size": config.image_size,
                     "examples_per_pass": config.pipeline_examples,
                     "crops_per_pass": count, "crops_per_second": rate})
        log(f"  pipeline stage {stage}: {rate:.1f} crops/s")
    return rows
