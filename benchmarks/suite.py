"""The whole benchmark suite from a checkout (same as `deconvnet benchmark`).

    python -m benchmarks.suite --quick                 # CI-sized, about 1 minute on 2 cores
    python -m benchmarks.suite --json runs/bench.json  # everything, about 5 minutes on 2 idle cores

Prints tables and the four verdicts; see `keras_deconvnet.benchmarking`.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_deconvnet.cli import benchmark  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog=benchmark.EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    benchmark.add_arguments(parser)
    return benchmark.run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
