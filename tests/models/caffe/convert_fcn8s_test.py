"""FCN-8s caffemodels into Keras in the original geometry, checked against the Caffe oracle."""

import numpy as np
import pytest
from models.caffe.caffe_nets import caffe_input, fcn8s_layers, oracle_scores, renamed
from models.caffe.caffe_oracle import run_net
from models.caffe.caffemodel_writer import write_caffemodel

from keras_deconvnet.models.caffe import (
    CaffeMappingError,
    convert_caffemodel,
    convert_fcn8s,
    load_caffe_weights,
)

MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)
WIDTHS = (4, 8, 16, 32, 32)
FC = 64
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def net_layers():
    return fcn8s_layers(np.random.default_rng(0), widths=WIDTHS, fc=FC)


@pytest.fixture(scope="module")
def fcn_file(tmp_path_factory, net_layers):
    path = tmp_path_factory.mktemp("fcn") / "fcn-8s-pascal.caffemodel"
    write_caffemodel(path, net_layers, form="V1", inputs={"data": (1, 3, 500, 500)})
    return path


def test_fcn8s_matches_the_oracle_at_two_odd_sizes(fcn_file, net_layers):
    conversion = convert_caffemodel(fcn_file, "fcn8s", progress=False)
    segmenter = conversion.segmenter
    assert segmenter.backbone.input_padding == 100
    assert segmenter.backbone.block_filters == WIDTHS and segmenter.backbone.fc_units == FC
    assert any("(5, 9, 31)" in note for note in conversion.notes)
    rng = np.random.default_rng(1)
    for height, width in ((37, 53), (101, 77)):
        image = rng.integers(0, 256, (1, height, width, 3), dtype=np.uint8)
        blobs = run_net(net_layers, {"data": caffe_input(image, MEAN_BGR)})
        expected = oracle_scores(blobs, "upscore")
        got = segmenter.predict(image, verbose=0)
        assert got.shape == expected.shape == (1, height, width, 21)
        error = np.abs(got - expected).max()
        assert error <= TOLERANCE * np.abs(expected).max(), (height, width, error)


def test_bias_layout_follows_the_deploy_prototxt(fcn_file):
    # score2 has a bias; score4 and upsample say `bias_term: false`.
    segmenter = convert_fcn8s(fcn_file)
    assert segmenter.get_layer("upscore2").use_bias
    assert not segmenter.get_layer("upscore_pool4").use_bias
    assert not segmenter.get_layer("upscore8").use_bias
    offsets = [segmenter.get_layer(name).offset
               for name in ("score_pool4_crop", "score_pool3_crop", "upscore8_crop")]
    assert offsets == [5, 9, 31]


def test_a_bias_the_keras_layer_lacks_raises_unless_it_is_zero(tmp_path, net_layers):
    layers = [dict(layer) for layer in net_layers]
    score4 = next(layer for layer in layers if layer["name"] == "score4")
    score4["params"] = {"convolution_param": {"num_output": 21, "kernel_size": 4,
                                              "stride": 2}}
    score4["blobs"] = [score4["blobs"][0], np.full((1, 1, 1, 21), 0.5, np.float32)]
    path = tmp_path / "biased.caffemodel"
    write_caffemodel(path, layers)
    with pytest.raises(CaffeMappingError, match="'score4' has a non-zero bias"):
        convert_fcn8s(path)
    score4["blobs"][1] = np.zeros((1, 1, 1, 21), np.float32)
    write_caffemodel(path, layers)
    assert not convert_fcn8s(path).get_layer("upscore_pool4").use_bias  # zeros: loads


def test_later_names_and_stored_crop_offsets(tmp_path, net_layers):
    # fcn.berkeleyvision.org's names, V2 layers, crop_param offsets, no score2 bias.
    layers = net_layers
    for old, new in (("score-fr", "score_fr"), ("score2", "upscore2"),
                     ("score-pool4", "score_pool4"), ("score4", "upscore_pool4"),
                     ("score-pool3", "score_pool3"), ("upsample", "upscore8")):
        layers = renamed(layers, old, new)
    for layer in layers:
        if layer["name"] == "upscore2":
            layer["blobs"] = layer["blobs"][:1]
            layer["params"] = {"convolution_param": {"num_output": 21, "kernel_size": 4,
                                                     "stride": 2, "bias_term": False}}
        if layer["type"] == "CROP":
            layer["params"] = {"crop_param": {"axis": 2, "offset": layer["crop_offset"]}}
    path = tmp_path / "voc-fcn8s.caffemodel"
    write_caffemodel(path, layers, form="V2")
    conversion = convert_caffemodel(path, "fcn8s", progress=False)
    np.testing.assert_array_equal(conversion.segmenter.get_layer("upscore2").bias, 0.0)
    assert any("'upscore2' has no bias" in note for note in conversion.notes)
    assert not any("derived from the geometry" in note for note in conversion.notes)
    # A stored offset that the Keras geometry does not compute is refused.
    crop = next(layer for layer in layers if layer["type"] == "CROP")
    crop["params"] = {"crop_param": {"axis": 2, "offset": (6, 6)}}
    write_caffemodel(path, layers, form="V2")
    with pytest.raises(CaffeMappingError, match=r"crop layer 'crop' \(of 'score_pool4'\) "
                                                r"has offset \(6, 6\)"):
        load_caffe_weights(conversion.segmenter, path, "fcn8s")


def test_unpadded_conv1_1_is_not_the_original_geometry(tmp_path, net_layers):
    layers = [dict(layer) for layer in net_layers]
    layers[0]["params"] = {"convolution_param": {"num_output": 4, "pad": 0,
                                                 "kernel_size": 3}}
    path = tmp_path / "unpadded.caffemodel"
    write_caffemodel(path, layers)
    with pytest.raises(CaffeMappingError, match="'conv1_1' has pad 0"):
        convert_fcn8s(path)


def test_a_deconvnet_file_is_not_an_fcn(tmp_path):
    from models.caffe.caffe_oracle import deconvnet_layers

    path = tmp_path / "deconvnet.caffemodel"
    write_caffemodel(path, deconvnet_layers(np.random.default_rng(2), widths=(2, 2, 2, 2, 2),
                                            fc=4))
    with pytest.raises(CaffeMappingError, match=r"not an FCN-8s caffemodel: no layer "
                                                r"'score-fr' or 'score_fr'"):
        convert_fcn8s(path)
