"""Unit tests of the REST request/response format and of the batcher (no server)."""

import threading
import time

import numpy as np
import pytest

from keras_deconvnet.serving import rest_api
from keras_deconvnet.serving.batching import (
    Batcher,
    BatchingOptions,
    parse_batching_parameters,
)
from keras_deconvnet.serving.errors import ServingError
from keras_deconvnet.serving.tensors import TensorInfo


class FakeSignature:
    """A signature `x` (float32 (-1, 2)) -> `y = 2 x`, recording its batch sizes."""

    name = "serving_default"

    def __init__(self, string=False, delay=0.0):
        dtype = np.dtype(object) if string else np.dtype("float32")
        self.inputs = {"x": TensorInfo("x", dtype, (None,) if string else (None, 2))}
        self.outputs = {"y": TensorInfo("y", np.dtype("float32"), (None, 2))}
        self.batches = []
        self.threads = []
        self.delay = delay

    def split(self, outputs, start, rows):
        return {k: v[start:start + rows] for k, v in outputs.items()}

    def __call__(self, inputs):
        x = inputs["x"]
        self.batches.append(len(x))
        self.threads.append(threading.current_thread().name)
        time.sleep(self.delay)
        if np.isnan(x).any():
            raise ServingError("NaN input")
        return {"y": 2 * x}


def test_row_and_columnar_requests():
    signature = FakeSignature()
    inputs, rows = rest_api.parse_predict_request({"instances": [[1, 2], [3, 4]]}, signature)
    assert rows and inputs == {"x": [[1, 2], [3, 4]]}
    inputs, rows = rest_api.parse_predict_request(
        {"instances": [{"x": [1, 2]}, {"x": [3, 4]}]}, signature
    )
    assert rows and inputs == {"x": [[1, 2], [3, 4]]}
    inputs, rows = rest_api.parse_predict_request({"inputs": {"x": [[1, 2]]}}, signature)
    assert not rows and inputs == {"x": [[1, 2]]}
    inputs, rows = rest_api.parse_predict_request({"inputs": [[1, 2]]}, signature)
    assert not rows and inputs == {"x": [[1, 2]]}


def test_b64_strings_decode_to_bytes():
    signature = FakeSignature(string=True)
    inputs, _ = rest_api.parse_predict_request(
        {"instances": [{"b64": "aGk="}, "plain"]}, signature
    )
    assert inputs["x"].dtype == object and list(inputs["x"]) == [b"hi", b"plain"]
    with pytest.raises(ServingError, match="base64"):
        rest_api.parse_predict_request({"instances": [{"b64": "a"}]}, signature)


@pytest.mark.parametrize("request_body, message", [
    ({}, "Missing 'inputs' or 'instances' key"),
    ({"instances": []}, "non-empty"),
    ({"instances": [{"x": [1, 2]}, [3, 4]]}, "Mixed instances"),
    ({"instances": [{"x": [1, 2]}, {"z": [3, 4]}]}, "same inputs"),
])
def test_malformed_requests(request_body, message):
    with pytest.raises(ServingError, match=message) as info:
        rest_api.parse_predict_request(request_body, FakeSignature())
    assert info.value.http_status == 400


def test_responses_have_tf_serving_shapes():
    outputs = {"labels": np.zeros((2, 1), np.int32), "scores": np.ones((2, 1), np.float32)}
    assert rest_api.format_predict_response(outputs, row_format=True) == {
        "predictions": [{"labels": [0], "scores": [1.0]}, {"labels": [0], "scores": [1.0]}]
    }
    assert rest_api.format_predict_response(outputs, row_format=False) == {
        "outputs": {"labels": [[0], [0]], "scores": [[1.0], [1.0]]}
    }
    single = {"labels": np.array([[1], [2]])}
    assert rest_api.format_predict_response(single, True) == {"predictions": [[1], [2]]}
    assert rest_api.format_predict_response(single, False) == {"outputs": [[1], [2]]}
    encoded = {"image_bytes": np.array([b"hi"], dtype=object)}
    assert rest_api.format_predict_response(encoded, True) == {
        "predictions": [{"b64": "aGk="}]
    }


def test_decode_json_errors():
    with pytest.raises(ServingError, match="JSON Parse error"):
        rest_api.decode_json(b"{")
    with pytest.raises(ServingError, match="JSON Parse error"):
        rest_api.decode_json(b"\xff\xfe")


def test_batching_parameters_file_format():
    options = parse_batching_parameters(
        "# comment\nmax_batch_size { value: 16 }\nbatch_timeout_micros { value: 1000 }\n"
        "num_batch_threads { value: 2 }\nallowed_batch_sizes: 4\n"
    )
    assert options == BatchingOptions(16, 1000, 2, 64)
    with pytest.raises(ValueError, match="max_batch_size"):
        parse_batching_parameters("max_batch_size { value: 0 }")


def test_batcher_batches_concurrent_requests_and_isolates_failures():
    signature = FakeSignature(delay=0.02)
    batcher = Batcher(signature, BatchingOptions(max_batch_size=8, batch_timeout_micros=20000))
    results, errors = {}, {}

    def call(i):
        x = np.full((1, 2), np.nan if i == 5 else i, np.float32)
        try:
            results[i] = batcher.submit({"x": x})["y"]
        except ServingError as e:
            errors[i] = e

    threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    batcher.close()
    assert set(errors) == {5} and "NaN" in errors[5].message
    for i, y in results.items():
        np.testing.assert_array_equal(y, np.full((1, 2), 2 * i))
    assert max(signature.batches) > 1  # concurrent requests shared a run


def test_oversized_images_are_refused_from_their_header():
    import io

    from PIL import Image

    from keras_deconvnet.serving.limits import RequestLimits, check_images

    buffer = io.BytesIO()
    Image.new("RGB", (40, 30)).save(buffer, "PNG")
    images = np.array([buffer.getvalue()], dtype=object)
    extents = check_images(images, RequestLimits(max_image_pixels=1200))
    assert [(e.height, e.width, e.frames) for e in extents] == [(30, 40, 1)]
    with pytest.raises(ServingError, match="40x30 image .*over the limit of 1199") as info:
        check_images(images, RequestLimits(max_image_pixels=1199))
    assert info.value.http_status == 400
    # Bytes whose size cannot be read cannot be bounded: refused, not decoded.
    with pytest.raises(ServingError, match=r"'image_bytes'\[1\] is not a readable"):
        check_images(np.array([buffer.getvalue(), b"not an image"], dtype=object),
                     RequestLimits())


def test_image_bytes_batches_are_cropped_back_to_each_request(export_base, util):
    from keras_deconvnet.serving.repository import ModelRepository

    repository = ModelRepository.from_base_dir(export_base, versions="latest")
    servable = repository.get(util.MODEL)
    signature = servable.signature("predict_image_bytes")
    assert signature.batchable and signature.padded_by_image_sizes
    assert servable.signature("serving_default").batchable
    assert not servable.signature("serving_default").padded_by_image_sizes
    encoded = [util.png_bytes(util.random_images(1, seed=s, size=size)[0])
               for s, size in ((1, (20, 50)), (2, (45, 25)))]
    alone = [signature({"image_bytes": np.array([e], dtype=object)}) for e in encoded]

    class Spy:
        batches = []

        def __call__(self, inputs):
            self.batches.append(len(inputs["image_bytes"]))
            return signature(inputs)

        def split(self, outputs, start, rows):
            return signature.split(outputs, start, rows)

    spy = Spy()
    batcher = Batcher(spy, BatchingOptions(max_batch_size=2, batch_timeout_micros=5_000_000))
    results = _submit_concurrently(
        batcher, [({"image_bytes": np.array([encoded[i]], dtype=object)},) for i in range(2)])
    assert spy.batches == [2]
    for i in range(2):
        np.testing.assert_array_equal(results[i]["image_sizes"], alone[i]["image_sizes"])
        np.testing.assert_array_equal(results[i]["labels"], alone[i]["labels"])


def test_batcher_refuses_more_rows_than_the_batch_size_and_queues_full_batches():
    # Was: a request of max_batch_size rows or more ran outside the queue, unbounded.
    signature = FakeSignature()
    batcher = Batcher(signature, BatchingOptions(max_batch_size=4))
    try:
        with pytest.raises(ServingError, match="Task size 5 is larger than maximum input "
                           "batch size 4") as info:
            batcher.submit({"x": np.zeros((5, 2), np.float32)})
        assert info.value.http_status == 400 and signature.batches == []
        out = batcher.submit({"x": np.ones((4, 2), np.float32)})
        np.testing.assert_array_equal(out["y"], np.full((4, 2), 2.0))
        assert signature.batches == [4] and signature.threads == ["batcher-0"]
    finally:
        batcher.close()


def _submit_concurrently(batcher, requests):
    """`batcher.submit(*args)` for each of `requests` from its own thread; closes the
    batcher; the results by index."""
    results = {}
    threads = [
        threading.Thread(target=lambda i=i: results.__setitem__(i, batcher.submit(*requests[i])))
        for i in range(len(requests))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    batcher.close()
    return results


def _run_two(batcher, extents):
    return _submit_concurrently(
        batcher, [({"x": np.full((1, 2), i, np.float32)}, extents[i]) for i in range(2)])


def test_batches_of_images_stay_within_the_request_pixel_budget():
    # Requests of 1 row each, padded to 100x100 and 10x10: joined, the batch would
    # cost 2 x 100 x 100 = 20000 pixels.
    from keras_deconvnet.serving.limits import ImageExtent

    extents = [ImageExtent(100, 100), ImageExtent(10, 10)]
    for budget, batches in ((20_000, [2]), (19_999, [1, 1])):
        signature = FakeSignature()
        batcher = Batcher(signature, BatchingOptions(max_batch_size=2,
                                                     batch_timeout_micros=2_000_000),
                          max_batch_pixels=budget)
        results = _run_two(batcher, extents)
        assert sorted(signature.batches) == batches, budget
        assert len(results) == 2


def test_json_numbers_out_of_range_are_bad_requests():
    from keras_deconvnet.serving.tensors import TensorInfo, convert_input

    images = TensorInfo("images", np.dtype("float32"), (None, 2))
    big = rest_api.decode_json(b'{"inputs": [[1, ' + b"9" * 5000 + b"]]}")
    assert big["inputs"][0][1] == float("inf")
    for body in (big, rest_api.decode_json(b'{"inputs": [[1, NaN]]}'),
                 {"inputs": [[1.0, 1e39]]}):  # 1e39 overflows float32
        with pytest.raises(ServingError, match="1 non-finite value") as info:
            convert_input(body["inputs"], images, strict_dtype=False)
        assert info.value.http_status == 400
    counts = TensorInfo("counts", np.dtype("int32"), (None,))
    with pytest.raises(ServingError, match="int32"):
        convert_input([1, 10**30], counts, strict_dtype=False)
    assert rest_api.decode_json(b'{"a": 123456789012345678}')["a"] == 123456789012345678


def test_chunked_encoding_is_the_same_json():
    outputs = {
        "labels": (np.arange(2 * 300 * 250).reshape(2, 300, 250) % 5 - 1).astype(np.int32),
        "image_sizes": np.array([[300, 250], [7, 9]], np.int32),
        "probabilities": np.array([[0.25, np.nan]], np.float32).repeat(2, 0),
    }
    for row_format in (True, False):
        plain = rest_api.encode_json(rest_api.format_predict_response(outputs, row_format))
        chunks = rest_api.encode_json_chunks(
            rest_api.format_predict_response(outputs, row_format, arrays=True),
            chunk_bytes=4096,
        )
        assert len(chunks) > 1 and b"".join(chunks) == plain


def test_response_values_are_limited_before_running(export_base, util):
    from keras_deconvnet.serving.limits import RequestLimits
    from keras_deconvnet.serving.repository import ModelRepository

    limits = RequestLimits(max_response_values=64 * 64 * 4 * 2)  # 2 rows of 64x64x(3+1)
    repository = ModelRepository.from_base_dir(export_base, versions="latest", limits=limits)
    try:
        images = np.zeros((3, 64, 64, 3), np.float32)
        with pytest.raises(ServingError, match="would hold 49152 values, over the limit of "
                           "32768 values per answer"):
            repository.predict(util.MODEL, None, "serving_default", {"images": images})
        _, _, outputs = repository.predict(util.MODEL, None, "serving_default",
                                           {"images": images[:2]})
        assert outputs["labels"].shape == (2, 64, 64)
    finally:
        repository.close()
