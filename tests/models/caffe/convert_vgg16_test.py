"""VGG_ILSVRC_16_layers_conv.caffemodel as the training start of DeconvNet and FCN-8s."""

import copy

import numpy as np
import pytest
from models.caffe.caffe_nets import caffe_input, oracle_scores, vgg16_layers
from models.caffe.caffe_oracle import run_net
from models.caffe.caffemodel_writer import write_caffemodel

from keras_deconvnet.models.caffe import (
    CaffeMappingError,
    convert_caffemodel,
    convert_vgg16,
)

MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)
WIDTHS = (4, 8, 16, 32, 32)
FC = 64


@pytest.fixture(scope="module")
def net_layers():
    return vgg16_layers(np.random.default_rng(0), widths=WIDTHS, fc=FC, classes=10)


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory, net_layers):
    path = tmp_path_factory.mktemp("vgg") / "VGG_ILSVRC_16_layers_conv.caffemodel"
    write_caffemodel(path, net_layers, form="V1")
    return path


def test_fcn8s_encoder_computes_the_oracles_fc7(vgg_file, net_layers):
    conversion = convert_caffemodel(vgg_file, "vgg16", target="fcn8s", progress=False)
    segmenter = conversion.segmenter
    assert type(segmenter).__name__ == "FCN8sImageSegmenter"
    assert segmenter.backbone.input_padding == 100 and segmenter.num_classes == 21
    assert any("fc8" in note for note in conversion.notes)  # ImageNet's classifier: unused
    # The untrained head keeps FCN's initialisation: zero skips, bilinear upsampling.
    np.testing.assert_array_equal(segmenter.get_layer("score_pool4").kernel, 0.0)
    assert float(np.max(segmenter.get_layer("upscore8").kernel)) == pytest.approx(0.8789, 1e-3)
    # fc7 of the Keras backbone against VGG16 run by the oracle with FCN's conv1_1 pad.
    padded = copy.deepcopy(net_layers)
    padded[0]["params"]["convolution_param"]["pad"] = 100
    image = np.random.default_rng(1).integers(0, 256, (1, 41, 35, 3), dtype=np.uint8)
    expected = oracle_scores(run_net(padded, {"data": caffe_input(image, MEAN_BGR)}), "fc7")
    got = np.asarray(segmenter.backbone(segmenter.preprocessor(image))["fc7"])
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


def test_deconvnet_gets_the_encoder_and_keeps_fresh_batchnorm(vgg_file, net_layers):
    segmenter = convert_vgg16(vgg_file)  # target="deconvnet"
    backbone = segmenter.backbone
    assert backbone.block_filters == WIDTHS and backbone.image_shape == (224, 224, 3)
    assert backbone.batch_norm_epsilon == 1e-3  # the named configuration's: trained in Keras
    blobs = {layer["name"]: layer["blobs"] for layer in net_layers if layer.get("blobs")}
    kernel = np.array(backbone.get_layer("block1_conv1").kernel)
    np.testing.assert_array_equal(kernel, blobs["conv1_1"][0].transpose(2, 3, 1, 0)[:, :, ::-1])
    np.testing.assert_array_equal(backbone.get_layer("fc7").kernel,
                                  blobs["fc7"][0].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(backbone.get_layer("fc6").bias, blobs["fc6"][1].reshape(-1))
    bn = backbone.get_layer("block3_conv2_bn")
    np.testing.assert_array_equal(bn.gamma, 1.0)
    np.testing.assert_array_equal(bn.moving_mean, 0.0)


def test_inner_product_vgg16_converts_like_the_conv_file(tmp_path, vgg_file):
    # The original VGG_ILSVRC_16_layers.caffemodel: fc6/fc7 as INNER_PRODUCT blobs.
    layers = vgg16_layers(np.random.default_rng(0), widths=WIDTHS, fc=FC, classes=10,
                          inner_product=True)
    path = tmp_path / "VGG_ILSVRC_16_layers.caffemodel"
    write_caffemodel(path, layers, form="V1")
    a = convert_vgg16(path, "fcn8s").backbone
    b = convert_vgg16(vgg_file, "fcn8s").backbone
    for wa, wb in zip(a.weights, b.weights, strict=True):
        np.testing.assert_array_equal(np.array(wa), np.array(wb))


def test_an_unexpected_layer_with_weights_is_refused(tmp_path, net_layers):
    extra = {"name": "fc9", "type": "CONVOLUTION", "bottoms": ["fc8"], "tops": ["fc9"],
             "blobs": [np.ones((2, 10, 1, 1), np.float32)]}
    path = tmp_path / "extra.caffemodel"
    write_caffemodel(path, [*net_layers, extra])
    with pytest.raises(CaffeMappingError, match=r"unexpected layer 'fc9' \(CONVOLUTION\)"):
        convert_vgg16(path)
    with pytest.raises(ValueError, match="`target` must be one of"):
        convert_vgg16(path, "unet")
