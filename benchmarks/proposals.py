"""The `proposals` section: instance-wise inference time per image.

A 500x375 image (VOC's typical size) is segmented with `predict_proposals` from N
sliding-window proposals predicted in batches of B crops. The proposal generator's own
time is reported separately, since the paper used precomputed EdgeBoxes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from keras_deconvnet.benchmarks.config import SuiteConfig
from keras_deconvnet.benchmarks.forward import build_model
from keras_deconvnet.benchmarks.machine import time_runs


def bench_proposals(config: SuiteConfig, log: Callable[[str], None] = print) -> dict:
    """Seconds per image for each proposal count and batch size."""
    from keras_deconvnet.data import SlidingWindowProposals
    from keras_deconvnet.data.proposals import call_proposals
    from keras_deconvnet.inference import InferenceConfig, predict_proposals

    settings = config.proposals
    size = 96 if settings.preset == "deconvnet_edge_small" else config.image_size
    model = build_model(settings.preset, size)
    image = np.random.default_rng(0).integers(0, 255, (375, 500, 3), dtype=np.uint8)

    def timed(fn) -> float:
        return time_runs(fn, config.warmup, config.repeats, config.seconds_per_figure,
                         config.max_repeats)["median_s"]

    rows = []
    for count in settings.counts:
        generator = SlidingWindowProposals(max_proposals=count)
        boxes = call_proposals(generator, image)
        generation = timed(lambda g=generator: call_proposals(g, image))
        for batch in settings.batches:
            if batch > max(count, 1) and batch != settings.batches[0]:
                continue  # a batch larger than the proposals is the same as `count`
            inference = InferenceConfig(batch_size=batch)
            seconds = timed(lambda c=inference, x=boxes: predict_proposals(model, image, x, c))
            rows.append({"proposals": int(len(boxes)), "batch_size": batch,
                         "seconds_per_image": seconds,
                         "ms_per_proposal": 1000 * seconds / max(len(boxes), 1),
                         "proposal_generation_ms": 1000 * generation})
            log(f"  {len(boxes)} proposals, batch {batch}: {seconds:.3f} s/image")
    return {"preset": settings.preset, "image_size": size, "rows": rows}
