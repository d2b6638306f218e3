"""DeconvNet's layer list in PyTorch eager: the reference the Keras model is timed against.

Imported only in the child process of the `torch` section (torch is an optional
dependency: `pip install "keras-deconvnet[bench]"`). Same convolutions, BatchNorm,
ReLU, max pooling with indices and max unpooling as a `DeconvNetBackbone` named
configuration, plus its score layer.
"""

from __future__ import annotations

import torch
from torch import nn

from keras_deconvnet.benchmarks.machine import time_runs


def _conv_bn_relu(cin: int, cout: int, kernel: int, padding: int) -> list:
    return [nn.Conv2d(cin, cout, kernel, padding=padding), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


class TorchDeconvNet(nn.Module):
    """The DeconvNet of `config` (a named configuration's backbone arguments)."""

    def __init__(self, config: dict, num_classes: int):
        super().__init__()
        filters, depths = config["block_filters"], config["block_depths"]
        fc, kernel = config["fc_units"], config["fc_kernel_size"]
        self.encoder = nn.ModuleList()
        cin = 3
        for width, depth in zip(filters, depths):
            layers = []
            for _ in range(depth):
                layers += _conv_bn_relu(cin, width, 3, 1)
                cin = width
            self.encoder.append(nn.Sequential(*layers))
        self.pool = nn.MaxPool2d(2, 2, return_indices=True, ceil_mode=True)
        self.fc = nn.Sequential(
            *_conv_bn_relu(cin, fc, kernel, 0), *_conv_bn_relu(fc, fc, 1, 0),
            nn.ConvTranspose2d(fc, filters[-1], kernel), nn.BatchNorm2d(filters[-1]),
            nn.ReLU(inplace=True))
        self.unpool = nn.MaxUnpool2d(2, 2)
        self.decoder = nn.ModuleList(
            self._decoder_block(filters, depths, block) for block in range(len(filters), 0, -1)
        )
        self.score = nn.Conv2d(filters[0], num_classes, 1)

    @staticmethod
    def _decoder_block(filters, depths, block: int) -> nn.Sequential:
        """The mirror of encoder `block` (1-based): its last layer narrows to the block below."""
        width = filters[block - 1]
        below = filters[block - 2] if block > 1 else width
        layers, cin = [], width
        for cout in [width] * (depths[block - 1] - 1) + [below]:
            layers += _conv_bn_relu(cin, cout, 3, 1)
            cin = cout
        return nn.Sequential(*layers)

    def forward(self, x):
        switches = []
        for block in self.encoder:
            x = block(x)
            size = x.shape[-2:]
            x, indices = self.pool(x)
            switches.append((indices, size))
        x = self.fc(x)
        for block, (indices, size) in zip(self.decoder, reversed(switches)):
            x = block(self.unpool(x, indices, output_size=size))
        return self.score(x)


def torch_child(payload: dict) -> dict:
    """In a subprocess: the named configuration `payload["preset"]`, timed per batch."""
    from keras_deconvnet.models import DeconvNetBackbone
    from keras_deconvnet.models.preset_utils import named_configs

    torch.set_num_threads(payload["threads"])
    entry = named_configs(DeconvNetBackbone)[payload["preset"]]
    model = TorchDeconvNet(entry["config"], entry["num_classes"]).eval()
    size = payload["image_size"]
    rows = []
    with torch.inference_mode():
        for batch in payload["batches"]:
            x = torch.randn(batch, 3, size, size)
            timing = time_runs(lambda x=x: model(x), payload["warmup"] + 1,
                               payload["repeats"], payload["seconds_per_figure"],
                               payload["max_repeats"])
            rows.append({"preset": payload["preset"], "batch": batch,
                         "seconds_per_batch": timing["median_s"],
                         "seconds_per_image": timing["median_s"] / batch})
    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "rows": rows}
