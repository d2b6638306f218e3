import json

import keras
import numpy as np
import pytest

from keras_deconvnet.layers import MaxPoolWithArgmax, Unpool
from keras_deconvnet.models import DeconvNet

TINY = dict(
    num_classes=3,
    image_shape=(64, 64, 3),
    block_filters=(4, 4, 8, 8, 8),
    fc_units=16,
    fc_kernel_size=2,
)


def _images(n=2, size=(64, 64)):
    return np.random.default_rng(0).normal(size=(n, *size, 3)).astype("float32")


class TestDeconvNet:
    def test_output_shape_and_logits(self):
        model = DeconvNet(**TINY)
        out = model.predict(_images(), verbose=0)
        assert out.shape == (2, 64, 64, 3) and out.dtype == np.float32
        assert not np.allclose(out.sum(-1), 1.0)

    def test_softmax_output(self):
        out = DeconvNet(**TINY, activation="softmax").predict(_images(), verbose=0)
        np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-5)

    def test_paper_layer_names_and_mirrored_decoder(self):
        model = DeconvNet(**TINY)
        names = [layer.name for layer in model.layers]
        for name in ["block1_conv1", "block5_pool", "fc6", "fc7", "deconv_fc6",
                     "unpool5", "deconv5_1", "deconv1_2", "score"]:
            assert name in names
        # deconv4 narrows to block 3's width in its last convolution, as in the paper.
        assert model.get_layer("deconv4_3").filters == 8
        assert model.get_layer("deconv2_2").filters == 4
        assert isinstance(model.get_layer("unpool3"), Unpool)
        assert isinstance(model.get_layer("block3_pool"), MaxPoolWithArgmax)

    def test_config_round_trip(self):
        model = DeconvNet(**TINY, name="tiny")
        config = model.get_config()
        json.dumps(config)
        clone = DeconvNet.from_config(config)
        assert clone.get_config() == config
        assert clone.count_params() == model.count_params()

    def test_fit_reduces_loss(self):
        model = DeconvNet(**TINY)
        x = _images(4)
        y = (x[..., 0] > 0).astype("int32")
        y[:, :4] = 255  # ignored pixels
        model.compile(
            optimizer=keras.optimizers.Adam(1e-2),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255),
        )
        history = model.fit(x, y, epochs=8, batch_size=2, verbose=0)
        assert history.history["loss"][-1] < history.history["loss"][0]

    def test_save_and_load_without_custom_objects(self, tmp_path):
        model = DeconvNet(**TINY)
        x = _images()
        path = tmp_path / "model.keras"
        model.save(path)
        loaded = keras.saving.load_model(path)
        assert isinstance(loaded, DeconvNet)
        np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))

    def test_fully_convolutional_with_odd_sizes(self):
        model = DeconvNet(**{**TINY, "image_shape": (None, None, 3)})
        for size in [(64, 64), (70, 93), (96, 65)]:
            assert model.predict(_images(1, size), verbose=0).shape == (1, *size, 3)

    def test_without_batch_norm(self):
        model = DeconvNet(**TINY, use_batch_norm=False)
        assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
        assert model.count_params() < DeconvNet(**TINY).count_params()

    def test_mixed_precision_keeps_float32_outputs(self):
        keras.config.set_dtype_policy("mixed_bfloat16")
        model = DeconvNet(**TINY)
        assert model.get_layer("block1_conv1").compute_dtype == "bfloat16"
        assert model.predict(_images(1), verbose=0).dtype == np.float32

    @pytest.mark.parametrize(
        "overrides, message",
        [
            ({"num_classes": 1}, "num_classes"),
            ({"image_shape": (64, 64)}, "image_shape"),
            ({"image_shape": (32, 64, 3)}, "too small"),
            ({"block_depths": (2, 2)}, "same length"),
            ({"block_filters": (4, 0, 8, 8, 8)}, ">= 1"),
            ({"activation": "relu"}, "activation"),
            ({"fc_units": 0}, "fc_units"),
        ],
    )
    def test_bad_configuration(self, overrides, message):
        with pytest.raises(ValueError, match=message):
            DeconvNet(**{**TINY, **overrides})


class TestPresets:
    def test_listed_presets(self):
        presets = DeconvNet.presets()
        assert {"deconvnet_vgg16_voc", "deconvnet_edge", "deconvnet_edge_small"} <= set(presets)

    @pytest.mark.parametrize("name", ["deconvnet_edge", "deconvnet_edge_small"])
    def test_edge_presets_match_their_metadata(self, name):
        model = DeconvNet.from_preset(name)
        assert model.count_params() == DeconvNet.presets()[name]["metadata"]["params"]

    def test_overrides(self):
        model = DeconvNet.from_preset(
            "deconvnet_edge_small", num_classes=4, image_shape=(96, 96, 3)
        )
        assert model.output_shape == (None, 96, 96, 4)

    def test_unknown_preset(self):
        with pytest.raises(ValueError, match="Known presets"):
            DeconvNet.from_preset("deconvnet_resnet")

    def test_paper_configuration_has_252m_parameters(self):
        model = DeconvNet.from_preset("deconvnet_vgg16_voc")
        params = model.count_params()
        assert 251_000_000 <= params <= 253_000_000
        assert params == DeconvNet.presets()["deconvnet_vgg16_voc"]["metadata"]["params"]
        # fc6 and deconv_fc6 carry ~103M each, as the paper says.
        assert model.get_layer("fc6").count_params() == 7 * 7 * 512 * 4096 + 4096
        assert model.get_layer("deconv_fc6").count_params() == 7 * 7 * 4096 * 512 + 512
        assert model.output_shape == (None, 224, 224, 21)
