"""Counts a model's multiply-accumulates from its convolution layers (for GFLOP/s figures).

The implementation lives in `keras_deconvnet.benchmarking` (installed with the
package, so `deconvnet benchmark` can use it); this module keeps the old import path.
"""

from __future__ import annotations

from keras_deconvnet.benchmarking import conv_macs

__all__ = ["conv_macs"]
