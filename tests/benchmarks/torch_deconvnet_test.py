"""The PyTorch reference of the `torch` benchmark section is the same network as ours.

Runs where torch is installed (`pip install "keras-deconvnet[bench]"`; not part of the
`test` extra), else skips with that reason.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is optional (the `bench` extra)")

from keras_deconvnet.benchmarks.torch_deconvnet import TorchDeconvNet  # noqa: E402
from keras_deconvnet.models import DeconvNetBackbone, DeconvNetImageSegmenter  # noqa: E402
from keras_deconvnet.models.preset_utils import named_configs  # noqa: E402


@pytest.mark.parametrize("preset", ["deconvnet_edge_small", "deconvnet_edge"])
def test_same_trainable_parameters_and_output_shape(preset):
    entry = named_configs(DeconvNetBackbone)[preset]
    reference = TorchDeconvNet(entry["config"], entry["num_classes"]).eval()
    segmenter = DeconvNetImageSegmenter.from_preset(preset)
    keras_trainable = sum(int(np.prod(w.shape)) for w in segmenter.trainable_weights)
    torch_trainable = sum(p.numel() for p in reference.parameters())
    assert torch_trainable == keras_trainable
    # The smallest input whose pool5 is one fc6 window (the Keras model's fc path).
    config = entry["config"]
    size = 2 ** len(config["block_filters"]) * config["fc_kernel_size"]
    with torch.inference_mode():
        scores = reference(torch.zeros(1, 3, size, size))
    assert tuple(scores.shape) == (1, entry["num_classes"], size, size)
