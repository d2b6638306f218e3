"""A signature's tensors (`TensorInfo`) and the check of request values against them.

`convert_input` turns one request value (nested lists from JSON, an array from a gRPC
`TensorProto`) into the array a signature input takes, or refuses it with
`INVALID_ARGUMENT`: a wrong dtype (numbers convert only where nothing is lost), integers
out of the dtype's range, non-finite floats (NaN, Infinity, or out of the float range),
strings that are not bytes, or a shape the signature does not accept.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_deconvnet.serving.errors import ServingError

# The numpy kinds a value may have to convert to an input of each kind losslessly.
_KIND_OK = {"f": "fiu", "i": "iu", "u": "iu", "b": "b"}


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """A signature input or output: its name, numpy dtype and static shape.

    `shape` has `None` for unknown dimensions (the batch dimension comes first);
    `dtype` is `np.dtype(object)` for strings (bytes).

    Example:

    >>> info = TensorInfo("images", np.dtype("float32"), (None, 224, 224, 3))
    >>> info.describe()
    'float32 (-1, 224, 224, 3)'
    >>> TensorInfo("image_bytes", np.dtype(object), (None,)).dtype_name
    'string'
    """

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]

    @property
    def is_string(self) -> bool:
        return self.dtype == np.dtype(object)

    @property
    def dtype_name(self) -> str:
        return "string" if self.is_string else self.dtype.name

    def describe(self) -> str:
        dims = ", ".join("-1" if d is None else str(d) for d in self.shape)
        return f"{self.dtype_name} ({dims})"


def tensor_info(name: str, spec) -> TensorInfo:
    """The `TensorInfo` of a `tf.TensorSpec` (a loaded signature's input or output).

    Example:

    >>> import tensorflow as tf
    >>> tensor_info("labels", tf.TensorSpec((None, 8, 8), tf.int32))
    TensorInfo(name='labels', dtype=dtype('int32'), shape=(None, 8, 8))
    """
    dtype = np.dtype(object) if spec.dtype.name == "string" else np.dtype(
        spec.dtype.as_numpy_dtype
    )
    return TensorInfo(name, dtype, tuple(spec.shape.as_list()))


def convert_input(value, info: TensorInfo, strict_dtype: bool = False) -> np.ndarray:
    """Checks one request value against a signature input and converts it.

    Args:
        value: the value sent (nested lists, an array, bytes for string inputs).
        info: the signature input.
        strict_dtype: require exactly `info.dtype` (gRPC's tensors carry one); else
            numbers convert to it when that loses nothing (JSON).

    Returns:
        The value as an array of `info.dtype`.

    Raises:
        ServingError: `INVALID_ARGUMENT` for a wrong dtype or shape, values out of the
            dtype's range, or non-finite floats.

    Example:

    >>> info = TensorInfo("x", np.dtype("float32"), (None, 2))
    >>> convert_input([[1, 2]], info)
    array([[1., 2.]], dtype=float32)
    >>> try:
    ...     convert_input([[1, float("nan")]], info)
    ... except ServingError as e:
    ...     print(e.message)
    Input 'x' has 1 non-finite value(s) (NaN, Infinity or out of the range of float32); ...
    """
    if info.is_string:
        array = _string_array(value, info)
    else:
        array = _numeric_array(value, info, strict_dtype)
    _check_shape(array, info)
    return array


def _string_array(value, info: TensorInfo) -> np.ndarray:
    array = np.asarray(value, dtype=object) if not isinstance(value, np.ndarray) else value
    if array.dtype.kind in "SU":
        array = array.astype(object)
    if array.dtype != np.dtype(object) or not all(
        isinstance(x, bytes) for x in array.reshape(-1)
    ):
        raise ServingError(
            f"Expects arg {info.name!r} to be string (bytes) but received "
            f"{array.dtype.name} values."
        )
    return array


def _numeric_array(value, info: TensorInfo, strict_dtype: bool) -> np.ndarray:
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise ServingError(
            f"Input {info.name!r} is not a rectangular array of numbers: {e}"
        ) from None
    _check_dtype(array, info, strict_dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        array = array.astype(info.dtype, copy=False)
    if array.dtype.kind in "fc":
        finite = np.isfinite(array)
        if not finite.all():
            bad = int(array.size - np.count_nonzero(finite))
            raise ServingError(
                f"Input {info.name!r} has {bad} non-finite value(s) (NaN, Infinity or "
                f"out of the range of {info.dtype.name}); every value must be finite"
            )
    return array


def _check_dtype(array: np.ndarray, info: TensorInfo, strict_dtype: bool) -> None:
    kind = array.dtype.kind
    if strict_dtype and array.dtype != info.dtype:
        raise ServingError(
            f"Expects arg {info.name!r} to be {info.dtype.name} but "
            f"{array.dtype.name} is provided"
        )
    if kind not in _KIND_OK.get(info.dtype.kind, info.dtype.kind):
        got = "strings" if kind in "SUO" else array.dtype.name
        raise ServingError(
            f"Expects arg {info.name!r} to be {info.dtype.name} but {got} "
            "is provided (or the nested lists are not rectangular)"
        )
    if info.dtype.kind in "iu" and kind in "iu":
        limits = np.iinfo(info.dtype)
        if array.size and (array.min() < limits.min or array.max() > limits.max):
            raise ServingError(
                f"Input {info.name!r} has values outside the range of {info.dtype.name}"
            )


def _check_shape(array: np.ndarray, info: TensorInfo) -> None:
    expected = info.shape
    if len(array.shape) != len(expected) or any(
        e is not None and e != a for e, a in zip(expected, array.shape)
    ):
        got = ", ".join(str(d) for d in array.shape)
        raise ServingError(
            f"Input {info.name!r} must have shape {info.describe()}; received "
            f"shape ({got})"
        )
