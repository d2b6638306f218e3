"""DeconvNet caffemodels into Keras, checked against the NumPy Caffe oracle at 1/16 width."""

import gc
import json
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
from models.caffe.caffe_nets import (
    as_folding_script_saved_it,
    caffe_input,
    oracle_scores,
    renamed,
)
from models.caffe.caffe_oracle import deconvnet_layers, run_net
from models.caffe.caffemodel_writer import V1_TYPES, write_caffemodel

from keras_deconvnet.models.caffe import (
    CaffeLayer,
    CaffeMappingError,
    CaffeModelError,
    CaffeNet,
    convert_caffemodel,
    convert_deconvnet,
    detect_bn_form,
    load_caffe_weights,
    read_caffemodel,
)
from keras_deconvnet.models.caffe.deconvnet_converter import deconvnet_specs
from keras_deconvnet.models.caffe.weight_mapping import plan_weights

# The authors' mean, BGR (their prototxts' mean_value, to more digits in their code).
MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)
WIDTHS = (4, 8, 16, 32, 32)  # 1/16 of VGG16's
FC = 256
TOLERANCE = 1e-4  # max |keras - oracle| <= TOLERANCE * max |oracle|


@pytest.fixture(scope="module")
def net_layers():
    return deconvnet_layers(np.random.default_rng(0), widths=WIDTHS, fc=FC)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)


def assert_matches_oracle(got, expected):
    assert got.shape == expected.shape
    error = np.abs(np.asarray(got, np.float64) - expected).max()
    assert error <= TOLERANCE * np.abs(expected).max(), (error, np.abs(expected).max())


def weights_of(model):
    return [np.array(w) for w in model.weights]


@pytest.mark.parametrize("form", ["folding_script", "bn_mode_inference"])
def test_inference_file_matches_the_oracle(tmp_path, net_layers, images, form):
    # The real file is the folding script's (no bn_mode, mean/var tops); also accept
    # files whose BN layers say bn_mode: INFERENCE, as the deploy prototxt does.
    layers = as_folding_script_saved_it(net_layers) if form == "folding_script" else net_layers
    path = tmp_path / "DeconvNet_trainval_inference.caffemodel"
    write_caffemodel(path, layers, form="V1", inputs={"data": (1, 3, 224, 224)})
    conversion = convert_caffemodel(path, "deconvnet", progress=False)
    segmenter = conversion.segmenter
    assert conversion.bn_form == "folded" and not conversion.needs_batchnorm_statistics
    backbone = segmenter.backbone
    assert backbone.block_filters == WIDTHS and backbone.fc_units == FC
    assert backbone.batch_norm_epsilon == 1e-9 and segmenter.num_classes == 21
    assert segmenter.class_names[15] == "person" and segmenter.palette[1] == (128, 0, 0)

    expected = oracle_scores(run_net(net_layers, {"data": caffe_input(images[:1], MEAN_BGR)}),
                             "seg-score")
    # RGB uint8 in: the preprocessor subtracts the mean, conv1_1 takes RGB.
    assert_matches_oracle(segmenter.predict(images[:1], verbose=0), expected)


def test_folded_batch_norm_is_exact_in_float32(tmp_path, net_layers):
    path = tmp_path / "inference.caffemodel"
    write_caffemodel(path, net_layers, form="V1")
    segmenter = convert_deconvnet(path)
    bn = segmenter.backbone.get_layer("deconv3_2_bn")
    scale, shift = (b.reshape(-1) for b in next(
        layer for layer in net_layers if layer["name"] == "debn3_2")["blobs"])
    x = np.random.default_rng(2).standard_normal((2, 5, 5, scale.size)).astype(np.float32) * 30
    np.testing.assert_array_equal(np.asarray(bn(x, training=False)), x * scale + shift)


def test_stage_file_needs_statistics_and_matches_the_oracle_in_training_mode(
        tmp_path, images):
    # A stage_*_train_result snapshot: BN blobs are gamma/beta, bn_mode LEARN, one top.
    layers = deconvnet_layers(np.random.default_rng(3), widths=WIDTHS, fc=FC, bn_mode=0)
    path = tmp_path / "stage_2_train_result.caffemodel"
    write_caffemodel(path, layers, form="V1")
    with pytest.warns(UserWarning, match="recompute_batchnorm_statistics"):
        segmenter = convert_deconvnet(path)
    bn = segmenter.backbone.get_layer("fc6_bn")
    np.testing.assert_array_equal(np.array(bn.moving_mean), 0.0)
    np.testing.assert_array_equal(np.array(bn.moving_variance), 1.0)
    assert bn.epsilon == 1e-9  # the fork's hard-coded var_eps_

    # The fork's LEARN BN normalises with the batch's statistics: Keras in training mode.
    blobs = run_net(layers, {"data": caffe_input(images, MEAN_BGR)})
    expected = oracle_scores(blobs, "seg-score")
    x = segmenter.preprocessor(images)
    assert_matches_oracle(np.asarray(segmenter(x, training=True)), expected)
    # The advice of the note: with that batch's (biased) statistics, inference gives the
    # same. (The default, the authors' m / (m - 1) correction, would not at batch 2.)
    from keras_deconvnet.training import recompute_batchnorm_statistics

    recompute_batchnorm_statistics(segmenter, [images.astype("float32")], num_batches=None,
                                   method="population")
    assert_matches_oracle(segmenter.predict(images, verbose=0), expected)


def test_stage_file_preset_records_that_statistics_are_missing(tmp_path):
    layers = deconvnet_layers(np.random.default_rng(4), widths=(2, 2, 4, 4, 4), fc=8,
                              bn_mode=0)
    path = tmp_path / "stage_1_train_result.caffemodel"
    write_caffemodel(path, layers, form="V1")
    conversion = convert_caffemodel(path, "deconvnet", progress=False)
    assert conversion.needs_batchnorm_statistics
    assert any("recompute" in note for note in conversion.notes)
    preset = conversion.save(tmp_path / "preset")
    entry = json.loads((preset / "metadata.json").read_text())["keras_deconvnet"]
    record = entry["training_data"]
    assert record["needs_batchnorm_statistics"] is True
    assert record["caffemodel"] == path.name and len(record["caffemodel_sha256"]) == 64
    assert record["mean_bgr"] == list(MEAN_BGR)
    assert "NOT" in entry["description"] and entry["class_names"][20] == "tvmonitor"
    converter = json.loads((preset / "image_converter.json").read_text())["config"]
    np.testing.assert_allclose(converter["offset"], [-m for m in reversed(MEAN_BGR)])
    assert converter["image_size"] == [224, 224]


def test_bn_form_detection():
    def net(bn_layers):
        return CaffeNet("x.caffemodel", "", "V1", tuple(bn_layers), (), ())

    blobs = (np.ones((1, 2, 1, 1), np.float32),) * 2

    def bn(name, mode=None, tops=1):
        params = {} if mode is None else {"bn_param": {"bn_mode": mode}}
        top_names = (name, f"{name}-mean", f"{name}-var")[:tops]
        return CaffeLayer(name, 43, ("c",), top_names, blobs, params)

    assert detect_bn_form(net([bn("a", 1), bn("b", 1)]))[0] == "folded"
    assert detect_bn_form(net([bn("a", tops=3), bn("b", tops=3)]))[0] == "folded"
    assert detect_bn_form(net([bn("a"), bn("b", 0)]))[0] == "batch"
    assert detect_bn_form(net([bn("a")]), "folded") == ("folded", "bn='folded' was requested")
    with pytest.raises(CaffeMappingError, match=r"disagree.*\['b'\]"):
        detect_bn_form(net([bn("a", 1), bn("b", 0)]))
    with pytest.raises(ValueError, match="`bn` must be one of"):
        detect_bn_form(net([bn("a")]), "learn")


def test_full_size_mapping_plans_every_variable_with_its_shape():
    # The paper's file: blobs are broadcast constants (no memory); the Keras model is
    # built without initialising its 252M weights; the plan is only checked, not applied.
    layers = deconvnet_layers(np.random.default_rng(0), constant=0.25)
    net = CaffeNet("DeconvNet_trainval_inference.caffemodel", "", "V1", tuple(
        CaffeLayer(spec["name"], V1_TYPES[spec["type"]], tuple(spec["bottoms"]),
                   tuple(spec["tops"]), tuple(spec["blobs"]), spec.get("params", {}))
        for spec in layers), (), ())
    assert net.num_parameters == 251_805_653
    from keras_deconvnet.models import DeconvNetBackbone, DeconvNetImageSegmenter

    with keras.StatelessScope(initialize_variables=False):
        backbone = DeconvNetBackbone.from_preset("deconvnet_vgg16_voc",
                                                 batch_norm_epsilon=1e-9)
        segmenter = DeconvNetImageSegmenter(backbone, compile=False)
        plan = plan_weights(net, segmenter, deconvnet_specs(), bn_form="folded")
    assert plan.problems == []
    planned = {variable.path: value.shape for _, items in plan.groups
               for variable, value, _ in items}
    assert len(planned) == len(segmenter.weights)  # every variable, once
    # Caffe's 251,805,653 values plus a mean and a variance per BN channel (16,704).
    assert plan.num_values == 251_805_653 + 2 * 16_704 == 251_839_061
    assert planned["fc6/kernel"] == (7, 7, 512, 4096)
    assert planned["deconv_fc6/kernel"] == (7, 7, 512, 4096)  # (kh, kw, out, in)
    assert planned["deconv4_3/kernel"] == (3, 3, 512, 256)
    assert planned["score/kernel"] == (1, 1, 64, 21)
    keras.backend.clear_session()  # forget the uninitialised variables


def test_renamed_layer_raises_naming_it_and_leaves_the_model_untouched(tmp_path, net_layers):
    good = tmp_path / "good.caffemodel"
    write_caffemodel(good, net_layers, form="V1")
    segmenter = convert_deconvnet(good)
    before = weights_of(segmenter)
    bad = tmp_path / "renamed.caffemodel"
    write_caffemodel(bad, renamed(net_layers, "deconv3_2", "deconv3_2_new"), form="V1")
    with pytest.raises(CaffeMappingError) as info:
        load_caffe_weights(segmenter, bad, "deconvnet")
    message = str(info.value)
    assert str(bad) in message and "nothing was loaded" in message
    assert "no layer 'deconv3_2' with weights" in message
    assert "unexpected layer 'deconv3_2_new'" in message
    for old, new in zip(before, weights_of(segmenter), strict=True):
        np.testing.assert_array_equal(old, new)


def test_wrong_shape_and_geometry_are_all_listed(tmp_path, net_layers):
    layers = [dict(layer) for layer in net_layers]
    for layer in layers:
        if layer["name"] == "deconv3_3":  # (in, out) swapped: a conv-layout blob
            layer["blobs"] = [layer["blobs"][0].transpose(1, 0, 2, 3), layer["blobs"][1]]
        if layer["name"] == "unpool3":
            layer["params"] = {"unpooling_param": {"unpool": 0, "kernel_size": 2,
                                                   "stride": 2, "unpool_size": 57}}
        if layer["name"] == "conv4_2":
            layer["params"] = {"convolution_param": {"num_output": 32, "pad": 2,
                                                     "kernel_size": 3}}
    path = tmp_path / "bad.caffemodel"
    write_caffemodel(path, layers, form="V1")
    with pytest.raises(CaffeMappingError) as info:
        convert_caffemodel(path, "deconvnet", progress=False)
    message = str(info.value)
    assert message.startswith(f"{path}: 3 layer(s) do not fit")
    assert "'deconv3_3' has a weight of shape (8, 16, 3, 3)" in message
    assert "needs (16, 8, 3, 3)" in message
    assert "'conv4_2' has pad (2, 2)" in message and "'unpool3' has unpool_size 57" in message


def test_truncated_and_foreign_files_name_the_file(tmp_path, net_layers):
    path = tmp_path / "net.caffemodel"
    write_caffemodel(path, net_layers, form="V1")
    cut = tmp_path / "cut.caffemodel"
    cut.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(CaffeModelError, match="truncated") as info:
        convert_caffemodel(cut, "deconvnet", progress=False)
    assert str(cut) in str(info.value)
    image = tmp_path / "photo.caffemodel"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(300))
    with pytest.raises(CaffeModelError, match="PNG") as info:
        convert_deconvnet(image)
    assert str(image) in str(info.value)
    # A readable caffemodel of another network.
    other = tmp_path / "other.caffemodel"
    write_caffemodel(other, [layer for layer in net_layers if layer["name"] != "fc6"])
    with pytest.raises(CaffeMappingError, match=r"not a DeconvNet caffemodel: no layer 'fc6'"):
        convert_deconvnet(other)


def test_double_and_shape_dim_blobs_convert_the_same(tmp_path, net_layers):
    # float64 `double_data` in `shape.dim` blobs instead of legacy float32 4-D blobs.
    first, second = tmp_path / "v1.caffemodel", tmp_path / "double.caffemodel"
    write_caffemodel(first, net_layers, form="V1")
    write_caffemodel(second, net_layers, form="V1", double=True, legacy_dims=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the inference form warns about nothing
        a, b = convert_deconvnet(first), convert_deconvnet(second)
    for wa, wb in zip(a.weights, b.weights, strict=True):
        np.testing.assert_array_equal(np.array(wa), np.array(wb))
    # The weights were copied: no variable keeps a view into the mapped file.
    gc.collect()
    if Path("/proc/self/maps").exists():
        assert str(second) not in Path("/proc/self/maps").read_text()
    with read_caffemodel(second) as net:
        assert net.layer("conv1_1").blobs[0].dtype == np.float64
