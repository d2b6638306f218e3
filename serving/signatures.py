"""One signature of a loaded SavedModel: its tensors, input checks, batching and calls.

`Signature` wraps a loaded concrete function (`loaded.signatures[name]`): it knows the
inputs and outputs as `TensorInfo`s, checks a request's inputs against them
(`convert_input`), says whether concurrent requests can be batched together and how
to split the batched answer again, how many values an answer holds (for
`RequestLimits.max_response_values`), and runs the function, turning TF errors into
`ServingError`s with TF Serving's codes.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from keras_deconvnet.serving import limits as limits_module
from keras_deconvnet.serving.errors import ServingError
from keras_deconvnet.serving.tensors import convert_input, tensor_info

DEFAULT_SIGNATURE = "serving_default"


class Signature:
    """One signature of a loaded SavedModel: checks inputs, runs, returns numpy.

    Args:
        name: the signature's name, e.g. `"serving_default"`.
        function: the loaded concrete function (`loaded.signatures[name]`).

    Example:

    >>> import tensorflow as tf
    >>> class Double(tf.Module):
    ...     @tf.function(input_signature=[tf.TensorSpec((None, 2), tf.float32, name="x")])
    ...     def double(self, x):
    ...         return {"y": 2 * x}
    >>> module = Double()
    >>> tf.saved_model.save(module, "double", signatures={"serving_default": module.double})
    >>> loaded = tf.saved_model.load("double")
    >>> signature = Signature("serving_default", loaded.signatures["serving_default"])
    >>> signature.batchable
    True
    >>> signature(signature.check_inputs({"x": [[1, 2]]}))["y"]
    array([[2., 4.]], dtype=float32)
    """

    def __init__(self, name: str, function):
        self.name = name
        self.function = function
        _, kwargs = function.structured_input_signature
        self.inputs = {k: tensor_info(k, s) for k, s in sorted(kwargs.items())}
        self.outputs = {
            k: tensor_info(k, s) for k, s in sorted(function.structured_outputs.items())
        }

    @property
    def padded_by_image_sizes(self) -> bool:
        """Whether the outputs are image maps padded to the batch's largest image.

        True for signatures like `predict_image_bytes`: an int `image_sizes` output
        `(batch, 2)` gives each image's `(height, width)`, and every other output
        with unknown dimensions has them exactly at axes 1 and 2.
        """
        sizes = self.outputs.get("image_sizes")
        if sizes is None or sizes.shape != (None, 2) or sizes.dtype.kind not in "iu":
            return False
        return all(
            None not in t.shape[3:] and t.shape[1:3] == (None, None)
            for k, t in self.outputs.items()
            if k != "image_sizes" and None in t.shape[1:]
        )

    @property
    def batchable(self) -> bool:
        """Whether requests can be concatenated along axis 0 and the outputs split.

        True when every input and output has a leading batch dimension and every
        output's other dimensions are static, or are image maps padded to the
        largest image (`padded_by_image_sizes`: each request's slice is cropped back
        to its own largest image, so batching never changes an answer's shape).
        """
        tensors = [*self.inputs.values(), *self.outputs.values()]
        if not all(len(t.shape) >= 1 and t.shape[0] is None for t in tensors):
            return False
        if any(None in t.shape[1:] for t in self.inputs.values()):
            return False
        return self.padded_by_image_sizes or all(
            None not in t.shape[1:] for t in self.outputs.values()
        )

    def split(self, outputs: Mapping[str, np.ndarray], start: int, rows: int) -> dict:
        """The rows `start:start + rows` of batched `outputs`, as one request's answer."""
        sliced = {k: v[start:start + rows] for k, v in outputs.items()}
        if self.padded_by_image_sizes and rows:
            height, width = sliced["image_sizes"].max(axis=0)
            for key, info in self.outputs.items():
                if key != "image_sizes" and None in info.shape[1:]:
                    sliced[key] = sliced[key][:, :height, :width]
        return sliced

    def output_values(self, rows: int, padded=None) -> int | None:
        """How many values the answer to `rows` rows holds, or None if not known.

        Args:
            rows: the request's batch size.
            padded: for `padded_by_image_sizes` signatures, the `ImageExtent` the
                image maps are padded to (largest height and width).
        """
        total = 0
        for key, info in self.outputs.items():
            dims = list(info.shape[1:])
            if (self.padded_by_image_sizes and padded is not None and key != "image_sizes"
                    and dims[:2] == [None, None]):
                dims[0], dims[1] = padded.height, padded.width
            if None in dims:
                return None
            total += rows * limits_module.count_values(dims)
        return total

    def check_inputs(
        self, inputs: Mapping[str, np.ndarray], strict_dtype: bool = False
    ) -> dict[str, np.ndarray]:
        """Checks and converts `inputs` (name -> array) for this signature.

        Args:
            inputs: one array per input of the signature.
            strict_dtype: require the exact dtype (gRPC's tensors carry one); else
                numbers convert to the input's dtype when that loses nothing (JSON).

        Returns:
            The inputs as arrays of the signature's dtypes.

        Raises:
            ServingError: `INVALID_ARGUMENT` for a missing or unknown input, a wrong
                dtype or shape, or inputs whose batch sizes differ.
        """
        expected = sorted(self.inputs)
        unknown = sorted(set(inputs) - set(self.inputs))
        if unknown:
            raise ServingError(
                f"input tensor alias not found in signature: {', '.join(unknown)}. "
                f"Inputs expected to be in the set {{{', '.join(expected)}}}."
            )
        missing = [k for k in expected if k not in inputs]
        if missing:
            raise ServingError(
                f"Missing input tensor(s) {', '.join(missing)} of signature "
                f"{self.name!r}; expected inputs {{{', '.join(expected)}}}."
            )
        converted = {}
        for key, info in self.inputs.items():
            converted[key] = convert_input(inputs[key], info, strict_dtype)
        batch_sizes = {v.shape[0] for v in converted.values() if v.ndim}
        if len(batch_sizes) > 1:
            raise ServingError(
                f"The inputs of signature {self.name!r} have different batch sizes: "
                + ", ".join(f"{k}: {v.shape[0]}" for k, v in converted.items())
            )
        return converted

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs the signature on checked inputs; TF errors become `ServingError`s."""
        import tensorflow as tf

        tensors = {
            k: tf.constant(v, dtype=tf.string if self.inputs[k].is_string else None)
            for k, v in inputs.items()
        }
        try:
            outputs = self.function(**tensors)
        except tf.errors.InvalidArgumentError as e:
            raise ServingError(_tf_message(e), "INVALID_ARGUMENT") from None
        except tf.errors.ResourceExhaustedError as e:
            raise ServingError(_tf_message(e), "RESOURCE_EXHAUSTED") from None
        except tf.errors.OpError as e:
            raise ServingError(_tf_message(e), "INTERNAL") from None
        return {k: v.numpy() for k, v in outputs.items()}


def _tf_message(error) -> str:
    # Keep the op's message; drop TF's "Graph execution error", node and stack lines.
    lines = []
    for line in (error.message or str(error)).splitlines():
        if not line.strip() or line[:1].isspace() or line.startswith(
            ("Graph execution error", "Detected at node", "<stack traces")
        ):
            continue
        lines.append(line.split(" [[")[0].strip())
    return " ".join(lines) or str(error).strip()
