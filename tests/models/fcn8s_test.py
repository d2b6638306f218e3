import keras
import numpy as np
import pytest

from keras_deconvnet.models import FCN8s
from keras_deconvnet.models.fcn8s import CropToMatch, _bilinear_kernel

TINY = dict(num_classes=3, image_shape=(None, None, 3), block_filters=(4, 4, 8, 8, 8),
            fc_units=16)


def test_vgg16_configuration_shapes_and_parameters():
    model = FCN8s()
    assert model.output_shape == (None, 224, 224, 21)
    # VGG16 convs 14,714,688 + fc6 102,764,544 + fc7 16,781,312 + score layers 102,207
    # + bilinear upsamplers 2 * 4*4*21*21 + 16*16*21*21 (no bias).
    assert model.count_params() == 134_489_759
    assert model.get_layer("score_pool4").input.shape[1:3] == (14, 14)
    assert model.get_layer("score_pool3").input.shape[1:3] == (28, 28)


@pytest.mark.parametrize("size", [(64, 64), (70, 93)])
def test_any_input_size(size):
    out = FCN8s(**TINY).predict(np.zeros((1, *size, 3)), verbose=0)
    assert out.shape == (1, *size, 3)


def test_upsamplers_start_bilinear():
    kernel = _bilinear_kernel(4, 1)[:, :, 0, 0]
    np.testing.assert_allclose(kernel[1:3, 1:3], 0.5625)
    model = FCN8s(**TINY)
    np.testing.assert_array_equal(
        model.get_layer("upscore2").get_weights()[0], _bilinear_kernel(4, 3)
    )


def test_save_round_trip(tmp_path):
    model = FCN8s(**TINY)
    x = np.random.default_rng(0).normal(size=(1, 64, 64, 3)).astype("float32")
    model.save(tmp_path / "fcn.keras")
    loaded = keras.saving.load_model(tmp_path / "fcn.keras")
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    assert FCN8s.from_config(model.get_config()).get_config() == model.get_config()


def test_crop_to_match():
    out = CropToMatch()(np.ones((2, 9, 8, 3)), np.ones((2, 7, 5, 1)))
    assert tuple(out.shape) == (2, 7, 5, 3)


def test_needs_five_blocks():
    with pytest.raises(ValueError, match="5 encoder blocks"):
        FCN8s(block_filters=(8, 8, 8), block_depths=(1, 1, 1))
