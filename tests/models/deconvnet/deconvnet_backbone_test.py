import keras
import numpy as np
import pytest
from keras_hub_harness import check_backbone
from model_fixtures import TINY_DECONVNET

from keras_deconvnet.layers import MaxPoolWithArgmax, Unpool
from keras_deconvnet.models import DeconvNetBackbone


def _images(n=2, size=(64, 64)):
    return np.random.default_rng(0).normal(size=(n, *size, 3)).astype("float32")


class TestDeconvNetBackbone:
    def test_basics(self):
        backbone = DeconvNetBackbone(**TINY_DECONVNET)
        check_backbone(backbone, _images())
        # The decoder's last map: block 1's width at the input's size.
        assert backbone.output_shape == (None, 64, 64, 4)

    def test_paper_layer_names_and_mirrored_decoder(self):
        backbone = DeconvNetBackbone(**TINY_DECONVNET)
        names = {layer.name for layer in backbone.layers}
        for name in ["block1_conv1", "block5_pool", "fc6", "fc7", "deconv_fc6",
                     "unpool5", "deconv5_1", "deconv1_1"]:
            assert name in names
        # deconv4 narrows to block 3's width in its last convolution, as in the paper.
        assert backbone.get_layer("deconv4_2").filters == 8
        assert backbone.get_layer("deconv2_1").filters == 4
        assert isinstance(backbone.get_layer("unpool3"), Unpool)
        assert isinstance(backbone.get_layer("block3_pool"), MaxPoolWithArgmax)

    def test_fully_convolutional_with_odd_sizes(self):
        backbone = DeconvNetBackbone(**{**TINY_DECONVNET, "image_shape": (None, None, 3)})
        for size in [(64, 64), (70, 93), (96, 65)]:
            assert backbone.predict(_images(1, size), verbose=0).shape == (1, *size, 4)

    def test_without_batch_norm(self):
        backbone = DeconvNetBackbone(**TINY_DECONVNET, use_batch_norm=False)
        assert not any(isinstance(la, keras.layers.BatchNormalization)
                       for la in backbone.layers)

    def test_dtype_argument(self):
        backbone = DeconvNetBackbone(**TINY_DECONVNET, dtype="bfloat16")
        assert backbone.dtype_policy.name == "bfloat16"

    @pytest.mark.parametrize(
        "overrides, message",
        [
            ({"image_shape": (64, 64)}, "image_shape"),
            ({"image_shape": (32, 64, 3)}, "too small"),
            ({"block_depths": (2, 2)}, "same length"),
            ({"block_filters": (4, 0, 8, 8, 8)}, ">= 1"),
            ({"fc_units": 0}, "fc_units"),
        ],
    )
    def test_bad_configuration(self, overrides, message):
        with pytest.raises(ValueError, match=message):
            DeconvNetBackbone(**{**TINY_DECONVNET, **overrides})


class TestNamedConfigurations:
    def test_presets_is_a_dict(self):
        presets = DeconvNetBackbone.presets
        assert isinstance(presets, dict)
        assert {"deconvnet_vgg16_voc", "deconvnet_edge", "deconvnet_edge_small"} <= set(presets)
        assert list(DeconvNetBackbone.presets) == list(presets)

    @pytest.mark.parametrize("name", ["deconvnet_edge", "deconvnet_edge_small"])
    def test_parameter_counts_match_the_metadata(self, name):
        from keras_deconvnet.models import DeconvNetImageSegmenter

        segmenter = DeconvNetImageSegmenter.from_preset(name)
        assert segmenter.count_params() == DeconvNetBackbone.presets[name]["metadata"]["params"]

    def test_overrides(self):
        backbone = DeconvNetBackbone.from_preset("deconvnet_edge_small", image_shape=(96, 96, 3))
        assert backbone.output_shape == (None, 96, 96, 8)

    def test_unknown_name(self):
        with pytest.raises(ValueError, match="neither a named configuration"):
            DeconvNetBackbone.from_preset("deconvnet_resnet")

    def test_paper_configuration_has_252m_parameters(self):
        from keras_deconvnet.models import DeconvNetImageSegmenter

        segmenter = DeconvNetImageSegmenter.from_preset("deconvnet_vgg16_voc")
        params = segmenter.count_params()
        assert params == DeconvNetBackbone.presets["deconvnet_vgg16_voc"]["metadata"]["params"]
        assert 251_000_000 <= params <= 253_000_000
        backbone = segmenter.backbone
        # fc6 and deconv_fc6 carry ~103M each, as the paper says.
        assert backbone.get_layer("fc6").count_params() == 7 * 7 * 512 * 4096 + 4096
        assert backbone.get_layer("deconv_fc6").count_params() == 7 * 7 * 4096 * 512 + 512
        assert segmenter.output_shape == (None, 224, 224, 21)
