"""The same layer list in PyTorch eager, in a child process: the reference speed."""

from __future__ import annotations

from keras_deconvnet.benchmarks.config import SuiteConfig
from keras_deconvnet.benchmarks.machine import run_child, time_runs


def torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def torch_child(payload: dict) -> dict:
    """In a subprocess: the DeconvNet layer list in PyTorch eager, timed per batch."""
    import torch
    from torch import nn

    from keras_deconvnet.models import deconvnet_presets

    torch.set_num_threads(payload["threads"])
    cfg = deconvnet_presets.preset_config(payload["preset"])

    def conv(cin, cout, k, pad):
        return [nn.Conv2d(cin, cout, k, padding=pad), nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True)]

    class TorchDeconvNet(nn.Module):
        def __init__(self):
            super().__init__()
            filters, depths = cfg["block_filters"], cfg["block_depths"]
            fc, k = cfg["fc_units"], cfg["fc_kernel_size"]
            self.encoder = nn.ModuleList()
            cin = 3
            for f, d in zip(filters, depths):
                layers = []
                for _ in range(d):
                    layers += conv(cin, f, 3, 1)
                    cin = f
                self.encoder.append(nn.Sequential(*layers))
            self.pool = nn.MaxPool2d(2, 2, return_indices=True, ceil_mode=True)
            self.fc = nn.Sequential(
                *conv(cin, fc, k, 0), *conv(fc, fc, 1, 0),
                nn.ConvTranspose2d(fc, filters[-1], k), nn.BatchNorm2d(filters[-1]),
                nn.ReLU(inplace=True))
            self.unpool = nn.MaxUnpool2d(2, 2)
            self.decoder = nn.ModuleList()
            for block in range(len(filters), 0, -1):
                width = filters[block - 1]
                below = filters[block - 2] if block > 1 else width
                widths = [width] * (depths[block - 1] - 1) + [below]
                layers, c = [], width
                for out in widths:
                    layers += conv(c, out, 3, 1)
                    c = out
                self.decoder.append(nn.Sequential(*layers))
            self.score = nn.Conv2d(filters[0], cfg["num_classes"], 1)

        def forward(self, x):
            switches = []
            for block in self.encoder:
                x = block(x)
                size = x.shape[-2:]
                x, idx = self.pool(x)
                switches.append((idx, size))
            x = self.fc(x)
            for block, (idx, size) in zip(self.decoder, reversed(switches)):
                x = self.unpool(x, idx, output_size=size)
                x = block(x)
            return self.score(x)

    model = TorchDeconvNet().eval()
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


def bench_torch(config: SuiteConfig, log=print) -> dict:
    """PyTorch rows (one subprocess per preset), or a note when torch is absent."""
    if not torch_available():
        return {"skipped": "torch is not installed (pip install 'keras-deconvnet[bench]')",
                "rows": []}
    rows, version = [], None
    for preset in config.presets:
        result = run_child("torch_reference.torch_child", {
            "preset": preset, "image_size": config.image_size,
            "batches": list(config.batches), "threads": config.thread_count(),
            "warmup": config.warmup, "repeats": config.repeats,
            "seconds_per_figure": config.seconds_per_figure,
            "max_repeats": config.max_repeats,
        })
        version = result["torch"]
        rows += result["rows"]
        for row in result["rows"]:
            log(f"  torch {preset} b{row['batch']}: "
                f"{row['seconds_per_image'] * 1e3:.1f} ms/image")
    return {"torch": version, "threads": config.thread_count(), "rows": rows}
