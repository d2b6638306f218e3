"""An independent NumPy model of the authors' Caffe fork training a tiny network.

Written from the C++ of HyeonwooNoh/caffe, sharing no code with the package:

- `Solver::Step` (src/caffe/solver.cpp): every parameter diff is zeroed, then
  `iter_size` ForwardBackward passes run; the convolution layers *add* their
  parameter gradients to the diff;
- `BNLayer::Backward_cpu/gpu` (src/caffe/layers/bn_layer.cpp, .cu): the scale and
  shift diffs are written by a gemv with beta 0, i.e. *overwritten* each pass; the
  bottom diff is `(s*dy - (sum(s*dy) + x_norm * sum(s*dy * x_norm)) / M) / std`;
- `SGDSolver::ComputeUpdateValue`: `local_rate = rate * blobs_lr / iter_size`,
  `diff += weight_decay * decay_mult * w`, `history = local_rate * diff + momentum *
  history`, then `Net::Update`: `w -= history`;
- `GetLearningRate`, policy "step": `base_lr * gamma ^ floor(iter / stepsize)`.

The network: 1x1 convolution (with bias) -> BN (learn mode, batch statistics) ->
1x1 convolution (with bias), a mean squared error loss. Data are NHWC float64.
"""

from __future__ import annotations

import numpy as np


def _forward_backward(params: dict, x: np.ndarray, target: np.ndarray, eps: float):
    """One ForwardBackward of the tiny net; the parameter gradients of this batch."""
    w1, b1, scale, shift, w2, b2 = (params[k] for k in
                                    ("w1", "b1", "scale", "shift", "w2", "b2"))
    h = x @ w1 + b1                                   # conv1, 1x1
    count = h.shape[0] * h.shape[1] * h.shape[2]      # M = N * H * W
    mean = h.mean(axis=(0, 1, 2))
    var = (h ** 2).mean(axis=(0, 1, 2)) - mean ** 2   # E(X^2) - (EX)^2, biased
    std = np.sqrt(var + eps)
    x_norm = (h - mean) / std
    z = x_norm * scale + shift                        # BN, learn mode
    y = z @ w2 + b2                                   # conv2, 1x1
    top = 2.0 * (y - target) / y.size                 # d mean((y - t)^2)
    grads = {"w2": np.einsum("nhwc,nhwk->ck", z, top), "b2": top.sum(axis=(0, 1, 2))}
    dz = top @ w2.T
    grads["scale"] = (dz * x_norm).sum(axis=(0, 1, 2))
    grads["shift"] = dz.sum(axis=(0, 1, 2))
    buffer = dz * scale
    dh = (buffer - (buffer.sum(axis=(0, 1, 2))
                    + x_norm * (buffer * x_norm).sum(axis=(0, 1, 2))) / count) / std
    grads["w1"] = np.einsum("nhwc,nhwk->ck", x, dh)
    grads["b1"] = dh.sum(axis=(0, 1, 2))
    return grads


# (blobs_lr, weight_decay) of each parameter: the prototxts' `blobs_lr: 1 blobs_lr: 2
# weight_decay: 1 weight_decay: 0` on convolutions; the BN layer sets none (1, 1).
MULTIPLIERS = {"w1": (1.0, 1.0), "b1": (2.0, 0.0), "scale": (1.0, 1.0),
               "shift": (1.0, 1.0), "w2": (1.0, 1.0), "b2": (2.0, 0.0)}
OVERWRITTEN = ("scale", "shift")  # the BN layer's diffs: beta 0


def fork_solve(params: dict, batches, iter_size: int, base_lr: float, momentum: float,
               weight_decay: float, stepsize: int, gamma: float = 0.1,
               eps: float = 1e-3) -> list[dict]:
    """Runs the fork's solver; returns the parameters after each update."""
    params = {k: np.array(v, np.float64) for k, v in params.items()}
    history = {k: np.zeros_like(v) for k, v in params.items()}
    batches = list(batches)
    after = []
    for iteration in range(len(batches) // iter_size):
        diff = {k: np.zeros_like(v) for k, v in params.items()}   # zero-init the params
        for i in range(iter_size):
            x, target = batches[iteration * iter_size + i]
            grads = _forward_backward(params, x, target, eps)
            for name, grad in grads.items():
                if name in OVERWRITTEN:
                    diff[name] = grad.copy()
                else:
                    diff[name] = diff[name] + grad
        rate = base_lr * gamma ** (iteration // stepsize)
        for name in params:
            lr_mult, decay_mult = MULTIPLIERS[name]
            local_rate = rate * lr_mult / iter_size
            local_decay = weight_decay * decay_mult
            if local_decay:
                diff[name] = diff[name] + local_decay * params[name]
            history[name] = local_rate * diff[name] + momentum * history[name]
            params[name] = params[name] - history[name]
        after.append({k: v.copy() for k, v in params.items()})
    return after
