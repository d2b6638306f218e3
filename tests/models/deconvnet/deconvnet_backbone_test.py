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


class TestDecoderInitializer:
    """The authors' fillers (training/001_stage_1/stage_1_train.prototxt): every
    deconvolution gaussian std 0.01 with zero bias, every BN scale 1 / shift 0.001."""

    CONFIG = {**TINY_DECONVNET, "block_filters": (16, 16, 32, 32, 32), "fc_units": 32}

    @staticmethod
    def _values(backbone, name, attribute):
        return keras.ops.convert_to_numpy(getattr(backbone.get_layer(name), attribute))

    def test_caffe_is_the_default(self):
        backbone = DeconvNetBackbone(**self.CONFIG)
        assert backbone.decoder_initializer == "caffe"
        decoder = [la.name for la in backbone.layers
                   if la.name.startswith("deconv") and not la.name.endswith(("_bn", "_relu"))]
        assert "deconv_fc6" in decoder and "deconv1_1" in decoder
        for name in decoder:
            kernel = self._values(backbone, name, "kernel")
            assert kernel.size >= 1000
            assert abs(kernel.mean()) < 0.002 and 0.008 < kernel.std() < 0.012, name
            np.testing.assert_array_equal(self._values(backbone, name, "bias"), 0.0)
        # The encoder's kernels keep Keras's Glorot default (VGG16 replaces them).
        assert self._values(backbone, "block3_conv1", "kernel").std() > 0.03
        # Every BatchNorm, encoder included.
        batchnorms = [la for la in backbone.layers
                      if isinstance(la, keras.layers.BatchNormalization)]
        encoder = sum(self.CONFIG["block_depths"]) + 2  # + fc6, fc7
        assert len(batchnorms) == len(decoder) + encoder
        for layer in batchnorms:
            np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.beta), 0.001)
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.gamma), 1.0)
        # Layers draw their own values.
        assert not np.allclose(self._values(backbone, "deconv2_1", "kernel").ravel()[:16],
                               self._values(backbone, "deconv3_1", "kernel").ravel()[:16])

    def test_glorot_and_config_round_trip(self):
        backbone = DeconvNetBackbone(**self.CONFIG, decoder_initializer="glorot")
        assert self._values(backbone, "deconv3_1", "kernel").std() > 0.03
        np.testing.assert_array_equal(self._values(backbone, "deconv3_1_bn", "beta"), 0.0)
        config = backbone.get_config()
        assert config["decoder_initializer"] == "glorot"
        assert DeconvNetBackbone.from_config(config).decoder_initializer == "glorot"
        with pytest.raises(ValueError, match="decoder_initializer"):
            DeconvNetBackbone(**self.CONFIG, decoder_initializer="he")
