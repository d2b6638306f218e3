"""Small requests must not cause huge work: each limit answers 400 naming itself.

Against the session's server subprocess (default limits: 8 rows per request, 40 M
pixels per image and per request, frames and padding counted), over REST and gRPC.
"""

import io
import json

import numpy as np
import pytest
from PIL import Image

from keras_deconvnet.serving.client import RestClient
from keras_deconvnet.serving.errors import ServingError


def _png(width, height, mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, "PNG")
    return buffer.getvalue()


def _predict_bytes(server, util, encoded, timeout=30):
    body = {"signature_name": "predict_image_bytes",
            "instances": [{"b64": util.b64(e)} for e in encoded]}
    return util.http("POST", f"{server.url}/v1/models/{util.MODEL}:predict", body,
                     timeout=timeout)


def _alive(server, util):
    assert server.process.poll() is None, server.stderr.read_text()[-2000:]
    status, _ = util.http("GET", f"{server.url}/v1/models/{util.MODEL}")
    assert status == 200


def test_rows_per_request_are_limited_to_the_batch_size(server, util):
    # Was: a request of more rows than max_batch_size ran outside the batcher's
    # queue, unbounded (3000 1x1 PNGs: 5 GB, 31 s).
    tiny = _png(1, 1)
    status, answer = _predict_bytes(server, util, [tiny] * 100)
    assert status == 400, answer
    assert "100 rows" in answer["error"] and "--max-rows-per-request" in answer["error"]
    assert "limit of 8" in answer["error"]
    status, answer = util.http(
        "POST", f"{server.url}/v1/models/{util.MODEL}:predict",
        {"inputs": np.zeros((9, 64, 64, 3)).tolist()}, timeout=30,
    )
    assert status == 400 and "9 rows" in answer["error"], answer
    # Exactly the batch size still works.
    labels = RestClient(server.url, util.MODEL, timeout=60).predict_images([tiny] * 8)
    assert len(labels) == 8 and labels[0].shape == (1, 1)
    _alive(server, util)


def test_padding_counts_against_the_request_pixel_limit(server, util):
    # Was: one 3000x3000 PNG plus ten 1x1 PNGs (50 KB) padded 11 label maps to
    # 3000x3000: a 288 MB answer and +1.9 GB.
    encoded = [_png(3000, 3000, "L")] + [_png(1, 1)] * 7
    status, answer = _predict_bytes(server, util, encoded)
    assert status == 400, answer
    message = answer["error"]
    assert "72000000 pixels" in message and "padded to 3000x3000" in message
    assert "--max-request-pixels" in message and "40000000" in message
    _alive(server, util)


def test_every_frame_of_an_animated_gif_counts(server, util):
    # Was: the pixel check counted one frame, tf.io.decode_image decoded all of them.
    frames = [Image.new("L", (2000, 2000), 20 * i) for i in range(12)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=40)
    status, answer = _predict_bytes(server, util, [buffer.getvalue()])
    assert status == 400, answer
    assert "2000x2000 image of 12 frames (48000000 pixels)" in answer["error"]
    assert "--max-image-pixels" in answer["error"]
    _alive(server, util)


def test_an_image_size_that_cannot_be_read_is_refused(server, util):
    status, answer = _predict_bytes(server, util, [b"GIF89a" + b"\0" * 8])
    assert status == 400 and "not a readable" in answer["error"], answer
    _alive(server, util)


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_non_finite_pixels_are_refused(server, util, literal):
    # Was: 200 with all-NaN probabilities and label 0.
    row = json.dumps(np.zeros((64, 64, 3)).tolist()).encode()
    body = b'{"inputs": [' + row.replace(b"0.0", literal, 1) + b"]}"
    status, answer = util.http("POST", f"{server.url}/v1/models/{util.MODEL}:predict", body)
    assert status == 400, answer
    assert "non-finite" in answer["error"] and "'images'" in answer["error"]


def test_huge_json_integer_is_a_bad_request(server, util):
    # Was: 500 "Internal error" (Python's 4300-digit int limit).
    row = json.dumps(np.zeros((64, 64, 3), int).tolist()).encode()
    body = b'{"inputs": [' + row.replace(b"0", b"7" * 5000, 1) + b"]}"
    status, answer = util.http("POST", f"{server.url}/v1/models/{util.MODEL}:predict", body)
    assert status == 400, answer
    assert "non-finite" in answer["error"]
    status, answer = util.http(
        "POST", f"{server.url}/v1/models/{util.MODEL}:predict",
        b'{"signature_name": ' + b"9" * 5000 + b', "inputs": [1]}',
    )
    assert status == 400, answer
    _alive(server, util)


@pytest.fixture
def grpc_stub(server):
    pytest.importorskip("tensorflow_serving.apis.prediction_service_pb2_grpc")
    grpc = pytest.importorskip("grpc")
    if server.grpc_target is None:
        pytest.skip("the server runs without gRPC")
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(server.grpc_target) as channel:
        yield grpc, prediction_service_pb2_grpc.PredictionServiceStub(channel)


def _request(util, tensor_proto, signature="serving_default", name="images"):
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = util.MODEL
    request.model_spec.signature_name = signature
    request.inputs[name].CopyFrom(tensor_proto)
    return request


def test_grpc_declared_shape_must_match_the_values_sent(grpc_stub, util):
    # Was: a 71-byte request declaring [1500, 96, 96, 3] without values was
    # zero-filled by tf.make_ndarray and run on 1500 images.
    from tensorflow.core.framework import tensor_pb2, types_pb2

    grpc, stub = grpc_stub
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    for size in (2, 64, 64, 3):
        proto.tensor_shape.dim.add(size=size)
    request = _request(util, proto)
    assert len(request.SerializeToString()) < 100
    for values in ([], [1.0]):  # none, or one to be repeated
        del proto.float_val[:]
        proto.float_val.extend(values)
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(_request(util, proto), timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "declares shape [2, 64, 64, 3]" in info.value.details()
        assert f"carries {len(values)} values" in info.value.details()
    proto.tensor_content = b"\0" * 100  # a few bytes of content: the same
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(_request(util, proto), timeout=30)
    assert "carries 100 bytes" in info.value.details()


def test_grpc_limits_and_non_finite_values(grpc_stub, server, util):
    import tensorflow as tf

    from keras_deconvnet.serving.client import GrpcClient

    grpc, stub = grpc_stub
    images = np.zeros((1, 64, 64, 3), np.float32)
    images[0, 3, 4, 1] = np.nan
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(_request(util, tf.make_tensor_proto(images)), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "1 non-finite value" in info.value.details()
    with GrpcClient(server.grpc_target, util.MODEL, timeout=30) as client:
        with pytest.raises(ServingError, match="9 rows, over the limit of 8") as error:
            client.predict_images([_png(1, 1)] * 9, batch_size=9)
        assert error.value.code == "INVALID_ARGUMENT"


def _tiny_frames_gif(frames: int) -> bytes:
    """A GIF of `frames` 1x1 frames, built by hand (Pillow merges identical frames)."""
    import struct

    head = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return head + frame * frames + b"\x3b"


def test_gif_frames_are_counted_without_decoding():
    from keras_deconvnet.serving.limits import gif_frames

    frames = [Image.new("L", (30, 20), 40 * i) for i in range(5)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=40)
    data = buffer.getvalue()
    assert gif_frames(data, 100) == Image.open(io.BytesIO(data)).n_frames == 5
    assert gif_frames(data, 2) == 3  # stops once past the cap
    assert gif_frames(_tiny_frames_gif(1000), 10**9) == 1000
    assert gif_frames(b"GIF89a", 10) == 1


def test_many_tiny_frames_count_their_decoding_cost():
    # 100000 1x1 frames in 1.5 MB: each frame costs the decoder more than a pixel, so
    # it counts at least 1024, and the scan stops once over the limit (fast).
    from keras_deconvnet.serving.limits import RequestLimits, check_images

    data = np.array([_tiny_frames_gif(100_000)], dtype=object)
    with pytest.raises(ServingError, match=r"1x1 image of 39064 frames \(each counted as "
                       r"at least 1024 pixels\)"):
        check_images(data, RequestLimits())
    small = np.array([_tiny_frames_gif(10)], dtype=object)
    (extent,) = check_images(small, RequestLimits())
    assert extent.frames == 10 and extent.pixels == 10 * 1024


def test_a_gif_frame_larger_than_its_screen_counts_its_own_size(server, util):
    # Was: a 48 KB GIF with a 1x1 screen and first frame and an 8000x8000 second frame
    # counted 2,048 pixels; tf.io.decode_image made it 8000x8000 (HTTP 200 after 27 s,
    # a 128 MB answer, the server +2 GB).
    from keras_deconvnet.benchmarks.hostile_images import gif_with_large_frame

    data = gif_with_large_frame(8000, 8000)
    assert len(data) < 60_000 and Image.open(io.BytesIO(data)).size == (1, 1)
    status, answer = _predict_bytes(server, util, [data])
    assert status == 400, answer
    assert "8000x8000 image of 2 frames (128000000 pixels)" in answer["error"]
    assert "--max-image-pixels" in answer["error"]
    _alive(server, util)


def test_frames_larger_than_the_canvas_in_other_formats(server, util):
    # APNG: TensorFlow decodes the IHDR image only (1x1), whatever a later fcTL says;
    # an animated WebP and a TIFF are refused by the decoder: all bounded, none 500.
    from keras_deconvnet.benchmarks import hostile_images

    apng = hostile_images.apng_with_large_frame(8000, 8000)
    status, answer = _predict_bytes(server, util, [apng])
    assert status == 200, answer
    assert answer["predictions"][0]["image_sizes"] == [1, 1]
    for data in (hostile_images.webp_with_large_frame(8000, 8000),
                 hostile_images.tiff_with_large_page(3000, 3000)):
        status, answer = _predict_bytes(server, util, [data])
        assert status == 400, answer
    _alive(server, util)


def test_the_answer_size_is_checked_on_the_real_outputs(tmp_path):
    # Was: the answer-size check was skipped whenever an estimate existed. A signature
    # whose image maps are larger than its image sizes say (as the GIF above made
    # TensorFlow's decoder) is refused after running, before anything is encoded.
    import tensorflow as tf

    from keras_deconvnet.serving.limits import ImageExtent, RequestLimits
    from keras_deconvnet.serving.repository import ModelRepository

    class Lying(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec((None,), tf.string, "image_bytes")])
        def serve(self, image_bytes):
            rows = tf.shape(image_bytes)[0]
            side = rows * 0 + 100  # not static: the maps' shape is (None, None, None)
            return {"labels": tf.fill(tf.stack([rows, side, side]), 0),
                    "image_sizes": tf.ones((rows, 2), tf.int32)}

    module = Lying()
    tf.saved_model.save(module, str(tmp_path / "m" / "1"),
                        signatures={"serving_default": module.serve})
    repository = ModelRepository.from_base_dir(
        tmp_path, limits=RequestLimits(max_response_values=1000))
    inputs = {"image_bytes": np.array([_png(1, 1)], dtype=object)}
    signature = repository.get("m").signature("")
    assert signature.output_values(1, ImageExtent(1, 1)) == 3  # the (wrong) estimate
    with pytest.raises(ServingError, match="10002 values, over the limit of 1000"):
        repository.predict("m", None, "", inputs)
    repository.close()
