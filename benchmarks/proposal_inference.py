"""Instance-wise inference time per image for N proposals and several batch sizes.

    python -m benchmarks.proposal_inference [--preset deconvnet_edge] [--quick] [--json PATH]

A 500x375 image (VOC's typical size) is segmented with `predict_proposals` using N
sliding-window proposals predicted in batches of B crops; each figure is the median
over repeats after a warm-up run. The proposal generator's own time is reported
separately (`proposals ms`), since the paper used precomputed EdgeBoxes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

from keras_deconvnet.data import SlidingWindowProposals
from keras_deconvnet.data.proposals import call_proposals
from keras_deconvnet.inference import predict_proposals
from keras_deconvnet.models import DeconvNet


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: traces the model for this batch size
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="deconvnet_edge")
    parser.add_argument("--proposals", nargs="+", type=int, default=[1, 10, 50])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8, 16, 50])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="edge_small, fewer settings")
    parser.add_argument("--json", default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.preset, args.proposals, args.batch_sizes, args.repeats = (
            "deconvnet_edge_small", [1, 10], [1, 10], 1)

    image_shape = (224, 224, 3) if args.preset != "deconvnet_edge_small" else (96, 96, 3)
    model = DeconvNet.from_preset(args.preset, image_shape=image_shape)
    image = np.random.default_rng(0).integers(0, 255, (375, 500, 3), dtype=np.uint8)
    print(f"# {platform.machine()}, {os.cpu_count()} cores; {args.preset} at "
          f"{image_shape[0]}x{image_shape[1]}, image 500x375")
    print(f"{'proposals':>9} {'batch':>5} {'s/image':>8} {'ms/proposal':>11} "
          f"{'proposals ms':>12}")
    rows = []
    for count in args.proposals:
        generator = SlidingWindowProposals(max_proposals=count)
        boxes = call_proposals(generator, image)
        proposal_seconds = _median_seconds(lambda g=generator: call_proposals(g, image),
                                           args.repeats)
        for batch in args.batch_sizes:
            if batch > max(count, 1) and batch != args.batch_sizes[0]:
                continue  # a batch larger than the proposals is the same as count
            seconds = _median_seconds(
                lambda b=batch, x=boxes: predict_proposals(model, image, x, batch_size=b),
                args.repeats)
            row = {"preset": args.preset, "proposals": int(len(boxes)), "batch_size": batch,
                   "seconds_per_image": seconds,
                   "ms_per_proposal": 1000 * seconds / max(len(boxes), 1),
                   "proposal_generation_ms": 1000 * proposal_seconds}
            rows.append(row)
            print(f"{row['proposals']:>9} {batch:>5} {seconds:>8.3f} "
                  f"{row['ms_per_proposal']:>11.1f} {row['proposal_generation_ms']:>12.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
