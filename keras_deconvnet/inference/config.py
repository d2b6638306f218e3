"""The settings of every inference path in one object, `InferenceConfig`.

Proposal inference (`predict_proposals`), the EDeconvNet ensemble (`predict_ensemble`),
whole-image inference and the CRF of the `*_crf` methods all read their settings from
it; the defaults are the authors' (`generate_EDeconvNet_CRF_results.m`). The names
each setting accepts live here too, so that every path validates them the same way.
"""

from __future__ import annotations

import dataclasses
import numbers

from keras_deconvnet.models.edeconvnet import ENSEMBLE_MODES  # the task's modes

PAPER_CONTEXT = 1.2
PAPER_TOP_N = 50
FCN_INPUT_SIZE = 500

SCORE_MODES = ("logits", "probabilities")
AGGREGATIONS = ("max", "mean")
WHOLE_IMAGE_MODES = ("resize", "sliding")
RESAMPLINGS = ("matlab", "bilinear")


def check_choice(name: str, value, choices: tuple[str, ...]) -> None:
    """Raises a ValueError naming `name` when `value` is not one of `choices`."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}. Received: {name}={value!r}")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclasses.dataclass
class InferenceConfig:
    """How to segment: proposals, their windows, aggregation, ensemble and CRF.

    The defaults are the authors' (`generate_EDeconvNet_CRF_results.m`).

    Args:
        proposals: a proposal generator (`callable(image[, image_id]) -> (N, 4)`),
            an `(N, 4)` array of boxes `[ymin, xmin, ymax, xmax]` (best first), or
            `None` (`SlidingWindowProposals(max_proposals=None)`, cut to `top_n`
            after the size filter); `FileProposals(dir, box_format="edgeboxes")`
            reads EdgeBoxes files, as the paper; `PaddedBoxProposals(dir)` the
            authors' `.mat` cache (`boxes_padded`, extended already: `context`
            is not applied to them).
        top_n: windows actually run per image, after the size filter (`None`: all).
            Defaults to 50.
        min_box_size: skip windows with a shorter side under this; `None` is half the
            network input (112 at 224).
        context: proposal enlargement about the centre, as the training crops.
            Defaults to 1.2, a reconstruction: the released code reads boxes
            extended already, by a rule it does not contain.
        score_mode: `"logits"` (raw scores, max on a zero canvas: the authors') or
            `"probabilities"` (a softmax per window first).
        aggregation: `"max"` (the paper's) or `"mean"`.
        resampling: how proposal crops are warped to the input and score maps
            back to their windows: `"matlab"` (default: MATLAB's
            `imresize(..., 'bilinear')`, antialiased when shrinking, as the
            authors' `preprocess_image_bb.m`; see
            `keras_deconvnet.inference.matlab_resize`) or `"bilinear"` (crops by
            the training crops' plain bilinear sampler, score maps by TensorFlow's
            resize: this package's earlier resampling).
        ensemble_mode: `"product"` (`deconvnet * max(0, fcn)` on raw scores, the
            authors' code) or `"mean"` (of the two softmax maps, the paper's text).
        fcn_input_size: the FCN-8s input the whole image is padded to (500).
        whole_image_mode: `"resize"` or `"sliding"`.
        batch_size: windows per forward pass.
        input_size: the network input `(h, w)`; defaults to the model's.
        crf: a callable `(image, scores, scores_are=...) -> marginals` for the
            `*_crf` methods (e.g. a `DenseCRF`); `None` is
            `keras_deconvnet.inference.dense_crf`.

    Raises:
        ValueError: for a setting outside the names above, a `top_n` or `batch_size`
            under 1, or a `context` that is not positive.

    Example:

    >>> config = InferenceConfig(top_n=20, score_mode="probabilities")
    >>> config.top_n, config.context, config.aggregation
    (20, 1.2, 'max')
    >>> InferenceConfig(top_n=0)
    Traceback (most recent call last):
    ValueError: `top_n` must be None or an int >= 1. Received: top_n=0
    """

    proposals: object = None
    top_n: int | None = PAPER_TOP_N
    min_box_size: float | None = None
    context: float = PAPER_CONTEXT
    score_mode: str = "logits"
    aggregation: str = "max"
    resampling: str = "matlab"
    ensemble_mode: str = "product"
    fcn_input_size: int = FCN_INPUT_SIZE
    whole_image_mode: str = "resize"
    batch_size: int = 16
    input_size: tuple | None = None
    crf: object = None

    def __post_init__(self):
        check_choice("score_mode", self.score_mode, SCORE_MODES)
        check_choice("aggregation", self.aggregation, AGGREGATIONS)
        check_choice("resampling", self.resampling, RESAMPLINGS)
        check_choice("ensemble_mode", self.ensemble_mode, ENSEMBLE_MODES)
        check_choice("whole_image_mode", self.whole_image_mode, WHOLE_IMAGE_MODES)
        if self.top_n is not None and not (_is_int(self.top_n) and self.top_n >= 1):
            raise ValueError(
                f"`top_n` must be None or an int >= 1. Received: top_n={self.top_n!r}"
            )
        if not (_is_int(self.batch_size) and self.batch_size >= 1):
            raise ValueError(
                f"`batch_size` must be an int >= 1. Received: batch_size={self.batch_size!r}"
            )
        if not self.context > 0:
            raise ValueError(f"`context` must be > 0. Received: context={self.context!r}")

    def to_dict(self) -> dict:
        """The settings as JSON-serialisable data, for the records commands write.

        Proposal generators and CRFs are described by their class and their
        `get_config()` (or dataclass fields); `proposals=None` is described as the
        default generator it stands for; an array of boxes by its shape.

        Example:

        >>> record = InferenceConfig(top_n=20).to_dict()
        >>> record["top_n"], record["proposals"]["class"], record["resampling"]
        (20, 'SlidingWindowProposals', 'matlab')
        """
        record = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "proposals":
                value = _describe(value if value is not None else _default_proposals())
            elif field.name == "crf":
                value = None if value is None else _describe(value)
            elif isinstance(value, tuple):
                value = list(value)
            record[field.name] = value
        return record


def _default_proposals():
    from keras_deconvnet.data.proposals import SlidingWindowProposals

    return SlidingWindowProposals(max_proposals=None)


def _describe(value) -> dict:
    """`{"class", "config"}` of a generator or CRF (`{"shape"}` for an array)."""
    if hasattr(value, "shape") and not callable(value):
        return {"class": "array", "shape": [int(s) for s in value.shape]}
    if isinstance(value, (list, tuple)):
        return {"class": "array", "shape": [len(value), 4]}
    if hasattr(value, "get_config"):
        config = value.get_config()
    elif dataclasses.is_dataclass(value):
        config = dataclasses.asdict(value)
    else:
        config = None
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in (config or {}).items()}
    return {"class": type(value).__name__, "config": config or None}
