import json

import numpy as np
from model_fixtures import smooth_images

from keras_deconvnet.models import (
    DeconvNetImageConverter,
    DeconvNetImageSegmenterPreprocessor,
)
from keras_deconvnet.models.deconvnet.deconvnet_image_converter import CAFFE_BGR_MEAN


class TestDeconvNetImageConverter:
    def test_rgb_minus_the_authors_mean(self):
        raw = smooth_images(2)
        out = np.asarray(DeconvNetImageConverter()(raw))
        expected = raw.astype("float32") - np.array(CAFFE_BGR_MEAN[::-1], "float32")
        np.testing.assert_allclose(out, expected, atol=1e-4)
        assert out.dtype == np.float32

    def test_resizes_without_keeping_the_aspect_ratio(self):
        converter = DeconvNetImageConverter(image_size=(32, 32))
        assert np.asarray(converter(smooth_images(1, (48, 80)))).shape == (1, 32, 32, 3)

    def test_config_round_trip(self):
        converter = DeconvNetImageConverter(image_size=(32, 48))
        config = converter.get_config()
        json.dumps(config)
        assert DeconvNetImageConverter.from_config(config).get_config() == config


class TestDeconvNetImageSegmenterPreprocessor:
    def test_masks_pass_through(self):
        preprocessor = DeconvNetImageSegmenterPreprocessor()
        masks = np.random.default_rng(0).integers(0, 3, (2, 64, 64)).astype("int32")
        x, y = preprocessor(smooth_images(2), masks)
        np.testing.assert_array_equal(np.asarray(y), masks)
        assert np.asarray(x).shape == (2, 64, 64, 3)

    def test_maps_over_tf_data(self):
        import tensorflow as tf

        preprocessor = DeconvNetImageSegmenterPreprocessor(
            DeconvNetImageConverter(image_size=(32, 32)), resize_output_mask=True
        )
        ds = tf.data.Dataset.from_tensor_slices(
            (smooth_images(2).astype("float32"), np.zeros((2, 64, 64, 1), "int32"))
        ).batch(2).map(preprocessor)
        x, y = next(iter(ds))
        assert tuple(x.shape) == (2, 32, 32, 3) and tuple(y.shape) == (2, 32, 32, 1)
