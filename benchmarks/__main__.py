"""`python -m keras_deconvnet.benchmarks` is `deconvnet benchmark`."""

import sys

from keras_deconvnet.cli import main

if __name__ == "__main__":
    sys.exit(main(["benchmark", *sys.argv[1:]]))
