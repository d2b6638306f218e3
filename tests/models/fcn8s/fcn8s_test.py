import keras
import numpy as np
import pytest
from keras_hub_harness import (
    check_backbone,
    check_predict_is_converter_then_model,
    check_preset_round_trip,
)
from model_fixtures import TINY_FCN8S, smooth_images, tiny_fcn8s

from keras_deconvnet.models import FCN8sBackbone, FCN8sImageSegmenter
from keras_deconvnet.models.fcn8s import CropToMatch, crop_offsets
from keras_deconvnet.models.fcn8s.fcn8s_layers import bilinear_kernel


class TestFCN8sBackbone:
    def test_basics_and_outputs(self):
        backbone = FCN8sBackbone(**TINY_FCN8S)
        check_backbone(backbone, smooth_images(1).astype("float32"))
        shapes = {k: tuple(v.shape) for k, v in backbone.output.items()}
        assert shapes == {"pool3": (None, 8, 8, 8), "pool4": (None, 4, 4, 8),
                          "fc7": (None, 2, 2, 16)}

    def test_needs_five_blocks(self):
        with pytest.raises(ValueError, match="5 encoder blocks"):
            FCN8sBackbone(block_filters=(8, 8, 8), block_depths=(1, 1, 1))


class TestFCN8sImageSegmenter:
    @pytest.mark.parametrize("size", [(64, 64), (70, 93)])
    def test_any_input_size(self, size):
        segmenter = tiny_fcn8s(image_shape=(None, None, 3))
        out = segmenter.predict(smooth_images(1, size), verbose=0)
        assert out.shape == (1, *size, 3)

    def test_upsamplers_start_bilinear(self):
        kernel = bilinear_kernel(4, 1)[:, :, 0, 0]
        np.testing.assert_allclose(kernel[1:3, 1:3], 0.5625)
        segmenter = tiny_fcn8s()
        np.testing.assert_array_equal(segmenter.get_layer("upscore2").get_weights()[0],
                                      bilinear_kernel(4, 3))

    def test_predict_and_preset_round_trip(self, tmp_path):
        segmenter = tiny_fcn8s()
        images = smooth_images(2)
        check_predict_is_converter_then_model(segmenter, images)
        check_preset_round_trip(segmenter, tmp_path / "fcn", images)

    def test_keras_file_round_trip(self, tmp_path):
        segmenter = tiny_fcn8s()
        segmenter.save(tmp_path / "fcn.keras")
        loaded = keras.saving.load_model(tmp_path / "fcn.keras")
        images = smooth_images(1)
        np.testing.assert_array_equal(segmenter.predict(images, verbose=0),
                                      loaded.predict(images, verbose=0))


class TestOriginalGeometry:
    def test_crop_offsets_are_derived(self):
        # The offsets of fcn.berkeleyvision.org's FCN-8s, from the geometry alone.
        assert crop_offsets(100, 7) == (5, 9, 31)
        assert crop_offsets(0, 7) == (0, 0, 0)
        # A 3x3 fc6 sees 2 fewer pool5 cells: the maps shift by 2 * 32 / 16 cells.
        assert crop_offsets(100, 3) == (1, 1, 95)

    @pytest.mark.parametrize("size", [(37, 53), (64, 64)])
    def test_padded_network_returns_the_input_size(self, size):
        segmenter = tiny_fcn8s(input_padding=100, fc_kernel_size=7,
                               image_shape=(None, None, 3))
        assert segmenter.predict(smooth_images(1, size), verbose=0).shape == (1, *size, 3)
        assert segmenter.get_layer("upscore8_crop").offset == 31

    def test_vgg16_configuration_parameters(self):
        segmenter = FCN8sImageSegmenter.from_preset("fcn8s_vgg16_voc")
        # VGG16 convs 14,714,688 + fc6 102,764,544 + fc7 16,781,312 + score layers
        # 102,207 + upsamplers 2 * 4*4*21*21 + 16*16*21*21 + upscore2's bias 21.
        assert segmenter.count_params() == 134_489_780
        assert segmenter.backbone.input_padding == 100


def test_crop_to_match():
    out = CropToMatch(offset=1)(np.ones((2, 9, 8, 3)), np.ones((2, 7, 5, 1)))
    assert tuple(out.shape) == (2, 7, 5, 3)
    with pytest.raises(ValueError, match="offset"):
        CropToMatch(offset=-1)
