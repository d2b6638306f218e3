"""The caffemodel reader against an independent writer: formats, blobs, params, errors, memory."""

import gc
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from models.caffe.caffe_oracle import deconvnet_layers, run_net
from models.caffe.caffemodel_writer import encode_caffemodel, write_caffemodel

from keras_deconvnet.models.caffe import (
    CaffeModelError,
    describe_caffemodel,
    read_caffemodel,
)


@pytest.fixture(autouse=True)
def _seed_and_clean():
    """Overrides tests/conftest.py's per-test Keras reset: nothing here uses Keras, and the
    reset (clear_session + gc) costs 0.3-1 s a test on a busy machine."""
    yield


PACKAGE_ROOT = Path(__file__).resolve().parents[3]


def small_layers(rng):
    return [
        {"name": "conv1_1", "type": "CONVOLUTION", "bottoms": ["data"], "tops": ["conv1_1"],
         "blobs": [rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
                   rng.standard_normal((1, 1, 1, 4)).astype(np.float32)],
         "params": {"convolution_param": {"num_output": 4, "pad": 1, "kernel_size": 3}}},
        {"name": "relu1_1", "type": "RELU", "bottoms": ["conv1_1"], "tops": ["conv1_1"],
         "blobs": []},
        {"name": "pool1", "type": "POOLING", "bottoms": ["conv1_1"],
         "tops": ["pool1", "pool1_mask"], "blobs": [],
         "params": {"pooling_param": {"pool": 0, "kernel_size": 2, "stride": 2}}},
        {"name": "score", "type": "DECONVOLUTION", "bottoms": ["pool1"], "tops": ["score"],
         "blobs": [rng.standard_normal((4, 21, 4, 4)).astype(np.float32),
                   rng.standard_normal(21).astype(np.float32)],
         "params": {"convolution_param": {"num_output": 21, "kernel_size": 4, "stride": 2,
                                          "bias_term": True}}},
    ]


@pytest.mark.parametrize("form", ["V1", "V2"])
@pytest.mark.parametrize("legacy_dims", [True, False])
@pytest.mark.parametrize("double", [False, True])
@pytest.mark.parametrize("packed", [True, False])
def test_round_trip(tmp_path, form, legacy_dims, double, packed):
    layers = small_layers(np.random.default_rng(0))
    path = tmp_path / "net.caffemodel"
    write_caffemodel(path, layers, form=form, legacy_dims=legacy_dims, double=double,
                     packed=packed, diff=True, name="tiny", inputs={"data": (1, 3, 8, 8)})
    with read_caffemodel(path) as net:
        assert net.name == "tiny" and net.format == form and net.path == str(path)
        assert net.inputs == ("data",) and net.input_shapes == ((1, 3, 8, 8),)
        assert [layer.name for layer in net] == [layer["name"] for layer in layers]
        expected_types = ([4, 18, 17, 39] if form == "V1"
                          else ["Convolution", "ReLU", "Pooling", "Deconvolution"])
        assert [layer.type for layer in net] == expected_types
        assert [layer.type_name for layer in net][1] == ("RELU" if form == "V1" else "ReLU")
        assert net.layer("pool1").tops == ("pool1", "pool1_mask")
        assert net.layer("relu1_1").blobs == ()  # a blob-less layer
        for layer, spec in zip(net, layers, strict=True):
            assert layer.bottoms == tuple(spec["bottoms"])
            assert len(layer.blobs) == len(spec["blobs"])
            for blob, original in zip(layer.blobs, spec["blobs"], strict=True):
                shape = ((1,) * (4 - original.ndim) + original.shape if legacy_dims
                         else original.shape)
                assert blob.shape == shape  # the bias of 21 reads back as (1, 1, 1, 21)
                assert blob.dtype == (np.float64 if double else np.float32)
                np.testing.assert_array_equal(blob.reshape(original.shape), original)
                assert not blob.flags.writeable
        assert net.num_parameters == sum(b.size for s in layers for b in s["blobs"])
        assert net.layer("conv1_1").params["convolution_param"] == {
            "num_output": 4, "pad": (1,), "kernel_size": (3,)}
        assert net.layer("pool1").params["pooling_param"] == {
            "pool": 0, "kernel_size": 2, "stride": 2}
        assert net.layer("score").params["convolution_param"]["bias_term"] is True


def mapped(path):
    return str(path) in Path("/proc/self/maps").read_text()


def test_packed_blobs_are_views_into_the_mapped_file(tmp_path):
    path = tmp_path / "net.caffemodel"
    write_caffemodel(path, small_layers(np.random.default_rng(1)))
    net = read_caffemodel(path)
    weight = net.layer("conv1_1").blobs[0]
    assert not weight.flags.owndata  # no copy was made
    base = weight
    while isinstance(base, np.ndarray):
        base = base.base
    assert isinstance(base, memoryview)  # ... of the mmap's buffer
    net.close()  # deferred while `weight` lives: the view stays readable
    assert net.layers == ()
    expected = small_layers(np.random.default_rng(1))[0]["blobs"][0]
    np.testing.assert_array_equal(weight, expected)
    if Path("/proc/self/maps").exists():
        assert mapped(path)
        del weight, base
        gc.collect()
        assert not mapped(path)  # the last view gone, the file is unmapped


def test_context_manager_unmaps_the_file(tmp_path):
    path = tmp_path / "net.caffemodel"
    write_caffemodel(path, small_layers(np.random.default_rng(1)))
    with read_caffemodel(path) as net:
        assert len(net) == 4
    gc.collect()
    assert not Path("/proc/self/maps").exists() or not mapped(path)


def test_bytes_input_and_v0_layers():
    rng = np.random.default_rng(2)
    layers = [{"name": "conv1", "type": "CONVOLUTION", "bottoms": ["data"], "tops": ["conv1"],
               "blobs": [rng.standard_normal((2, 3, 5, 5)).astype(np.float32)]},
              {"name": "relu1", "type": "RELU", "bottoms": ["conv1"], "tops": ["conv1"]}]
    net = read_caffemodel(encode_caffemodel(layers, form="V0"))
    assert net.path == "<bytes>" and net.format == "V0"
    assert [(layer.name, layer.type) for layer in net] == [("conv1", "conv"), ("relu1", "relu")]
    assert net.layer("conv1").bottoms == ("data",) and net.layer("conv1").tops == ("conv1",)
    np.testing.assert_array_equal(net.layer("conv1").blobs[0], layers[0]["blobs"][0])


def test_fork_params_are_decoded_only_on_fork_types():
    layers = [
        {"name": "bn1_1", "type": "BN", "bottoms": ["c"], "tops": ["c"],
         "blobs": [np.ones((1, 2, 1, 1), np.float32), np.zeros((1, 2, 1, 1), np.float32)],
         "params": {"bn_param": {"bn_mode": 1}}},
        {"name": "unpool1", "type": "UNPOOLING", "bottoms": ["c", "m"], "tops": ["u"],
         "params": {"unpooling_param": {"unpool": 0, "kernel_size": 2, "stride": 2,
                                        "unpool_size": 224}}},
        # Field 45 on a BVLC type: another fork's message, not the fork's bn_param.
        {"name": "conv", "type": "CONVOLUTION", "bottoms": ["u"], "tops": ["v"],
         "params": {"bn_param": {"bn_mode": 1}}},
    ]
    net = read_caffemodel(encode_caffemodel(layers, form="V1"))
    assert net.layer("bn1_1").type == 43 and net.layer("bn1_1").type_name == "BN"
    assert net.layer("bn1_1").params == {"bn_param": {"bn_mode": 1}}
    assert net.layer("unpool1").type == 42
    assert net.layer("unpool1").params["unpooling_param"]["unpool_size"] == 224
    assert net.layer("conv").params == {}


def test_v2_crop_param_and_duplicate_names():
    layers = [{"name": "crop", "type": "CROP", "bottoms": ["a", "b"], "tops": ["c"],
               "params": {"crop_param": {"axis": 2, "offset": (5, 5)}}},
              {"name": "crop", "type": "CROP", "bottoms": ["c", "d"], "tops": ["e"],
               "params": {"crop_param": {"offset": 9}}}]
    net = read_caffemodel(encode_caffemodel(layers, form="V2"))
    assert [layer.params["crop_param"]["offset"] for layer in net] == [(5, 5), (9,)]
    assert len(net.layers_named("crop")) == 2 and "crop" in net and "fuse" not in net
    with pytest.raises(KeyError, match="2 layers are named 'crop'"):
        net.layer("crop")
    with pytest.raises(KeyError, match="no layer named 'fuse'"):
        net.layer("fuse")


def test_synthetic_deconvnet_reads_back_and_runs_like_its_source(tmp_path):
    rng = np.random.default_rng(3)
    layers = deconvnet_layers(rng, widths=(2, 2, 4, 4, 4), fc=8, size=224)
    path = tmp_path / "DeconvNet_trainval_inference.caffemodel"
    write_caffemodel(path, layers, form="V1", inputs={"data": (1, 3, 224, 224)})
    rows = describe_caffemodel(path)
    by_name = {row["name"]: row for row in rows}
    assert by_name["fc6-deconv"]["type"] == 39
    assert by_name["fc6-deconv"]["blob_shapes"] == [(8, 4, 7, 7), (1, 1, 1, 4)]
    assert by_name["debn1_2"]["type_name"] == "BN"
    assert by_name["debn1_2"]["blob_shapes"] == [(1, 2, 1, 1), (1, 2, 1, 1)]
    assert by_name["unpool3"]["params"]["unpooling_param"]["unpool_size"] == 56
    assert by_name["pool5"]["tops"] == ["pool5", "pool5_mask"]
    json.dumps(rows, default=list)  # a CLI can print it
    x = rng.standard_normal((1, 3, 224, 224))
    expected = run_net(layers, {"data": x})["seg-score"]
    with read_caffemodel(path) as net:
        spec = [{"name": layer.name, "type": layer.type_name, "bottoms": layer.bottoms,
                 "tops": layer.tops, "blobs": layer.blobs, "params": layer.params}
                for layer in net]
        got = run_net(spec, {"data": x})["seg-score"]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
    assert got.shape == (1, 21, 224, 224)


# -- errors ---------------------------------------------------------------------------


def write_small(tmp_path):
    path = tmp_path / "net.caffemodel"
    write_caffemodel(path, small_layers(np.random.default_rng(4)))
    return path, path.read_bytes()


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.97])
def test_truncated_file_names_file_layer_and_offset(tmp_path, fraction):
    _, data = write_small(tmp_path)
    cut = tmp_path / "cut.caffemodel"
    cut.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CaffeModelError) as info:
        read_caffemodel(cut)
    message = str(info.value)
    assert str(cut) in message and "truncated" in message and "byte offset" in message
    assert "layer #" in message
    if fraction > 0.3:  # inside the weights of the last layer, after its name
        assert "layer #3 'score'" in message


def test_cut_inside_a_named_layer_names_it(tmp_path):
    layers = small_layers(np.random.default_rng(5))
    data = encode_caffemodel(layers, form="V2")  # V2 writes the name first
    with pytest.raises(CaffeModelError, match=r"^<bytes>: layer #3 'score': truncated file"):
        read_caffemodel(data[:-200])


def test_foreign_files_are_rejected_with_what_they_are(tmp_path):
    import h5py

    h5 = tmp_path / "weights.h5"
    with h5py.File(h5, "w") as f:
        f["conv1_1/kernel"] = np.ones((3, 3, 3, 4), np.float32)
    png = tmp_path / "image.caffemodel"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    text = tmp_path / "deploy.prototxt"
    text.write_text('name: "DeconvNet"\nlayers { bottom: "data" top: "conv1_1" }\n')
    empty = tmp_path / "empty.caffemodel"
    empty.write_bytes(b"")
    noise = tmp_path / "noise.caffemodel"
    noise.write_bytes(np.random.default_rng(6).integers(0, 256, 4096, np.uint8).tobytes())
    expectations = {h5: "HDF5", png: "PNG", text: "text", empty: "empty", noise: ""}
    for path, what in expectations.items():
        with pytest.raises(CaffeModelError) as info:
            read_caffemodel(path)
        assert str(path) in str(info.value) and what in str(info.value)
        assert isinstance(info.value, ValueError)


def test_blob_shape_that_does_not_match_its_data(tmp_path):
    layers = small_layers(np.random.default_rng(7))
    weights = layers[0]["blobs"][0]
    layers[0]["blobs"][0] = (weights, (4, 3, 3, 2))  # declares 72 values, holds 108
    for legacy in (True, False):
        path = tmp_path / f"bad{legacy}.caffemodel"
        write_caffemodel(path, layers, legacy_dims=legacy)
        with pytest.raises(CaffeModelError) as info:
            read_caffemodel(path)
        message = str(info.value)
        assert str(path) in message and "'conv1_1' blob 0" in message
        assert "(4, 3, 3, 2) needs 72 values but the file holds 108" in message


def test_v1_and_v2_layers_in_one_file_are_rejected():
    layers = small_layers(np.random.default_rng(8))
    mixed = encode_caffemodel(layers, form="V1") + encode_caffemodel(layers, form="V2")
    with pytest.raises(CaffeModelError, match="both V1 `layers`.*and V2 `layer`"):
        read_caffemodel(mixed)


def test_weightless_netparameter_is_rejected():
    with pytest.raises(CaffeModelError, match="has no layers"):
        read_caffemodel(encode_caffemodel([], name="empty"))


# -- memory ---------------------------------------------------------------------------

# Loads the reader modules alone (numpy only: no TensorFlow; bare stand-ins for the parent
# packages skip their __init__s, which import Keras), reads the file, touches every value,
# then copies every blob; prints the peaks as JSON.
_MEASURE = textwrap.dedent("""
    import importlib, json, resource, sys, tracemalloc, types
    from pathlib import Path
    import numpy as np
    directory = Path(sys.argv[1]) / "keras_deconvnet"
    for name in ("keras_deconvnet", "keras_deconvnet.models", "keras_deconvnet.models.caffe"):
        package = types.ModuleType(name)
        package.__path__ = [str(directory.joinpath(*name.split(".")[1:]))]
        sys.modules[name] = package
    module = importlib.import_module("keras_deconvnet.models.caffe.caffemodel")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    net = module.read_caffemodel(sys.argv[2])
    total = sum(float(blob.sum(dtype=np.float64)) for layer in net for blob in layer.blobs)
    read_peak = tracemalloc.get_traced_memory()[1]
    rss_read = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    tracemalloc.reset_peak()
    copies = [np.array(blob) for layer in net for blob in layer.blobs]
    copy_peak = tracemalloc.get_traced_memory()[1]
    print(json.dumps({"total": total, "count": net.num_parameters, "read_peak": read_peak,
                      "copy_peak": copy_peak, "rss_read": rss_read,
                      "tensorflow": "tensorflow" in sys.modules, "layers": len(net)}))
""")


def measure(path):
    result = subprocess.run([sys.executable, "-c", _MEASURE, str(PACKAGE_ROOT), str(path)],
                            capture_output=True, text=True, timeout=600, check=True)
    return json.loads(result.stdout)


def test_reading_200mb_maps_instead_of_copying(tmp_path):
    # 50M float32 values in 4 layers: constant blobs (broadcast views) write without RAM.
    shapes = [(512, 512, 8, 12), (256, 512, 8, 12), (512, 512, 4, 12), (1, 1, 1, 1024)]
    values = [0.5, -1.0, 2.0, 1.0]
    layers = [{"name": f"fc{i}", "type": "CONVOLUTION", "bottoms": ["x"], "tops": ["x"],
               "blobs": [np.broadcast_to(np.float32(v), shape)]}
              for i, (shape, v) in enumerate(zip(shapes, values, strict=True))]
    path = tmp_path / "big.caffemodel"
    size = write_caffemodel(path, layers)
    assert size == path.stat().st_size and size > 200e6
    stats = measure(path)
    count = sum(int(np.prod(s)) for s in shapes)
    assert stats["count"] == count and not stats["tensorflow"]
    assert stats["total"] == sum(v * np.prod(s) for v, s in zip(values, shapes, strict=True))
    assert stats["read_peak"] < 1e6  # parsing + summing allocates no blob copies
    assert stats["rss_read"] < 1.5 * size  # the mapped pages, nothing more
    assert 4 * count <= stats["copy_peak"] < 1.5 * size  # np.array(blob): one copy each


@pytest.mark.slow
def test_full_size_deconvnet_file_252m_parameters(tmp_path):
    layers = deconvnet_layers(np.random.default_rng(0), constant=0.25)
    path = tmp_path / "DeconvNet_trainval_inference.caffemodel"
    size = write_caffemodel(path, layers, form="V1", inputs={"data": (1, 3, 224, 224)})
    stats = measure(path)
    assert 251e6 < stats["count"] < 253e6 and size > 4 * stats["count"]
    assert stats["total"] == pytest.approx(0.25 * stats["count"])
    assert stats["read_peak"] < 2e6 and stats["rss_read"] < 1.5 * size
    assert stats["copy_peak"] < 1.5 * size
    with read_caffemodel(path) as net:
        assert net.layer("fc6").blobs[0].shape == (4096, 512, 7, 7)
        assert net.layer("fc6-deconv").blobs[0].shape == (4096, 512, 7, 7)
        assert net.layer("seg-score-voc").blobs[0].shape == (21, 64, 1, 1)


# === Budgets against hostile files (issue 24) ==========================================


def test_4m_empty_layers_are_refused_in_bounded_time():
    """8 MB of empty layers took 87 s and 2.15 GB; the layer budget refuses it at once."""
    from keras_deconvnet.models.caffe.caffemodel import MAX_LAYERS

    data = b"\x12\x00" * 4_000_000
    begin = time.perf_counter()
    with pytest.raises(CaffeModelError, match=f"more than {MAX_LAYERS:,} layers"):
        read_caffemodel(data)
    seconds = time.perf_counter() - begin
    print(f"4M empty layers refused in {seconds:.2f} s")
    assert seconds < 10


def test_field_budget_bounds_a_layer_of_millions_of_fields():
    from keras_deconvnet.models.caffe.protobuf_wire import MAX_FIELDS

    bottoms = b"\x12\x01b" * (MAX_FIELDS + 10)  # bottom: "b", over and over
    data = b"\x12" + _varint_bytes(len(bottoms) + 4) + b"\x22\x02fc" + bottoms
    with pytest.raises(CaffeModelError, match="protobuf fields") as caught:
        read_caffemodel(data)
    assert len(str(caught.value)) < 200


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(out + bytes([value]))
