"""Hostile blobs: interleaved unpacked values in linear time, capped dimensions, short errors.

The files are encoded here byte by byte (tests/models/caffe/caffemodel_writer.py's
encoder), not by the reader's code. Issue 24 measured the old reader at 0.25 s for 100 KB
of interleaved values, 40 s for 1.6 MB and over 300 s for 3.2 MB (quadratic).
"""

import struct
import time

import numpy as np
import pytest
from models.caffe.caffemodel_writer import _key, _length_delimited, _varint

from keras_deconvnet.models.caffe import CaffeModelError, read_caffemodel
from keras_deconvnet.models.caffe.blob_proto import MAX_BLOB_AXES
from keras_deconvnet.models.caffe.caffe_net import MAX_MESSAGE_CHARS


@pytest.fixture(autouse=True)
def _seed_and_clean():
    """No Keras here: skip tests/conftest.py's per-test Keras reset."""
    yield


def one_layer(blob: bytes, name: bytes = b"fc") -> bytes:
    """A V1 NetParameter with one layer (name, one blob)."""
    return _length_delimited(2, _length_delimited(4, name) + _length_delimited(6, blob))


def shape(*dims: int) -> bytes:
    return _length_delimited(7, _length_delimited(1, b"".join(_varint(d) for d in dims)))


def interleaved_blob(values: np.ndarray, other: bytes) -> bytes:
    """`data` as one tag per float, each followed by the field `other`."""
    records = np.empty(values.size, [("tag", "V1"), ("value", "<f4"), ("other", f"V{len(other)}")])
    records["tag"] = np.frombuffer(_key(5, 5), "V1")[0]
    records["value"] = values
    records["other"] = np.frombuffer(other, f"V{len(other)}")[0]
    return shape(values.size) + records.tobytes()


@pytest.mark.parametrize("other", [
    _key(6, 5) + struct.pack("<f", 0.0),  # diff, unpacked: a run of one each time
    _key(10, 0) + _varint(1),  # an unknown varint field
])
def test_interleaved_unpacked_floats_read_in_linear_time(other):
    values = np.random.default_rng(0).standard_normal(1_600_000 // (5 + len(other)))
    values = values.astype(np.float32)
    data = one_layer(interleaved_blob(values, other))
    assert len(data) >= 1_500_000
    begin = time.perf_counter()
    with read_caffemodel(data) as net:
        blob = net.layers[0].blobs[0]
        seconds = time.perf_counter() - begin
        np.testing.assert_array_equal(blob, values)
    print(f"{len(data):,} bytes of interleaved unpacked floats: {seconds:.3f} s")
    # Measured 0.23 s here (1.6 MB); the quadratic reader took 40 s. The bound is far
    # from both so that a loaded 2-core machine cannot make it flaky.
    assert seconds < 5


@pytest.mark.parametrize("chunk, large", [(1 << 20, 1 << 16), (7, 50)])
def test_pieces_in_any_order_and_packing_concatenate_in_file_order(monkeypatch, chunk, large):
    """(7, 50): the gather runs in many chunks, long pieces copied on their own."""
    from keras_deconvnet.models.caffe import blob_proto

    monkeypatch.setattr(blob_proto, "_GATHER_CHUNK", chunk)
    monkeypatch.setattr(blob_proto, "_LARGE_PIECE", large)
    values = np.arange(400, dtype=np.float32)
    unpacked = b"".join(_key(5, 5) + struct.pack("<f", v) for v in values[:100])
    packed = _length_delimited(5, values[100:200].tobytes())
    interleaved = b"".join(_key(5, 5) + struct.pack("<f", v) + _key(10, 0) + b"\x01"
                           for v in values[200:300])
    more = _length_delimited(5, values[300:303].tobytes()) + b"".join(
        _key(5, 5) + struct.pack("<f", v) + _key(6, 5) + b"\0\0\0\0" for v in values[303:])
    data = one_layer(shape(4, 100) + unpacked + packed + interleaved + more)
    with read_caffemodel(data) as net:
        np.testing.assert_array_equal(net.layers[0].blobs[0], values.reshape(4, 100))


def test_a_long_unpacked_run_is_one_copy_and_a_packed_field_a_view():
    values = np.random.default_rng(1).standard_normal(100_000).astype(np.float64)
    unpacked = np.empty(values.size, [("tag", "V1"), ("value", "<f8")])
    unpacked["tag"] = np.frombuffer(_key(8, 1), "V1")[0]
    unpacked["value"] = values
    with read_caffemodel(one_layer(shape(values.size) + unpacked.tobytes())) as net:
        blob = net.layers[0].blobs[0]
        assert blob.dtype == np.float64 and not blob.flags.writeable
        np.testing.assert_array_equal(blob, values)
    packed = _length_delimited(5, values.astype(np.float32).tobytes())
    with read_caffemodel(one_layer(shape(values.size) + packed)) as net:
        assert net.layers[0].blobs[0].base is not None  # a view of the buffer


@pytest.mark.parametrize("where", ["blob", "input_dim"])
def test_a_16_mb_list_of_packed_dims_gives_one_short_line(where):
    dims = b"\x01" * 16_000_000
    if where == "blob":
        data = one_layer(_length_delimited(7, _length_delimited(1, dims)))
    else:
        data = _length_delimited(4, dims) + one_layer(shape(1) + _length_delimited(5, b"\0" * 4))
    begin = time.perf_counter()
    with pytest.raises(CaffeModelError) as caught:
        read_caffemodel(data)
    message = str(caught.value)
    assert len(message) <= MAX_MESSAGE_CHARS and "\n" not in message
    assert "more than" in message
    assert time.perf_counter() - begin < 5  # the list is not decoded whole (today: 0.00 s)


def test_caffes_axis_limit():
    ok = one_layer(shape(*[1] * MAX_BLOB_AXES) + _length_delimited(5, b"\0" * 4))
    with read_caffemodel(ok) as net:
        assert net.layers[0].blobs[0].ndim == MAX_BLOB_AXES
    too_many = one_layer(shape(*[1] * (MAX_BLOB_AXES + 1)) + _length_delimited(5, b"\0" * 4))
    with pytest.raises(CaffeModelError, match="more than 32 blob dimensions"):
        read_caffemodel(too_many)


def test_a_16_mb_layer_name_is_cut_in_errors():
    data = one_layer(shape(2) + _length_delimited(5, b"\0" * 4), name=b"n\n" * 8_000_000)
    with pytest.raises(CaffeModelError) as caught:
        read_caffemodel(data)
    message = str(caught.value)
    assert len(message) <= MAX_MESSAGE_CHARS and "\n" not in message
    assert "characters)" in message and "needs 2 values" in message
