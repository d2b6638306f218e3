import keras
import numpy as np
import pytest
from keras_hub_harness import check_predict_is_converter_then_model, check_preset_round_trip
from model_fixtures import smooth_images, tiny_deconvnet

from keras_deconvnet.models import DeconvNetImageSegmenter


class TestDeconvNetImageSegmenter:
    def test_logits_by_default_and_softmax_option(self):
        images = smooth_images(2)
        logits = tiny_deconvnet().predict(images, verbose=0)
        assert logits.shape == (2, 64, 64, 3) and logits.dtype == np.float32
        assert not np.allclose(logits.sum(-1), 1.0)
        probs = tiny_deconvnet(activation="softmax").predict(images, verbose=0)
        np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)

    def test_predict_on_raw_images_is_converter_then_model(self):
        segmenter = tiny_deconvnet(calibrated=True)
        check_predict_is_converter_then_model(segmenter, smooth_images(2))
        # Raw uint8 and the same pixels as float give the same answer.
        raw = smooth_images(1)
        np.testing.assert_allclose(segmenter.predict(raw, verbose=0),
                                   segmenter.predict(raw.astype("float32"), verbose=0),
                                   atol=1e-5)

    def test_fit_on_raw_images_with_sparse_masks(self):
        segmenter = tiny_deconvnet()
        images = smooth_images(4)
        masks = (images[..., 0] > 128).astype("int32")
        masks[:, :4] = 255  # ignored pixels
        segmenter.compile(optimizer=keras.optimizers.Adam(1e-2))  # sparse loss, MeanIoU
        history = segmenter.fit(images, masks, epochs=6, batch_size=2, verbose=0)
        assert history.history["loss"][-1] < history.history["loss"][0]
        assert "mean_iou" in history.history

    def test_preset_round_trip_through_keras_hub(self, tmp_path):
        segmenter = tiny_deconvnet(calibrated=True, class_names=["bg", "cat", "dog"],
                                   palette=[(0, 0, 0), (1, 2, 3), (4, 5, 6)])
        check_preset_round_trip(segmenter, tmp_path / "tiny", smooth_images(2))

    def test_new_head_from_a_preset(self, tmp_path):
        segmenter = tiny_deconvnet(calibrated=True, class_names=["bg", "cat", "dog"])
        path = segmenter.save_to_preset(tmp_path / "p")
        five = DeconvNetImageSegmenter.from_preset(str(path), num_classes=5)
        assert five.output_shape[-1] == 5 and len(five.class_names) == 5
        for a, b in zip(five.backbone.weights, segmenter.backbone.weights):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    def test_keras_file_round_trip(self, tmp_path):
        segmenter = tiny_deconvnet(calibrated=True)
        images = smooth_images(1)
        segmenter.save(tmp_path / "s.keras")
        loaded = keras.saving.load_model(tmp_path / "s.keras")
        assert isinstance(loaded, DeconvNetImageSegmenter)
        np.testing.assert_array_equal(loaded.predict(images, verbose=0),
                                      segmenter.predict(images, verbose=0))

    def test_mixed_precision_keeps_float32_outputs(self):
        keras.config.set_dtype_policy("mixed_bfloat16")
        segmenter = tiny_deconvnet()
        assert segmenter.backbone.get_layer("block1_conv1").compute_dtype == "bfloat16"
        assert segmenter.predict(smooth_images(1), verbose=0).dtype == np.float32

    @pytest.mark.parametrize(
        "kwargs, message",
        [
            ({"num_classes": 1}, "num_classes"),
            ({"activation": "relu"}, "activation"),
            ({"class_names": ["a", "b"]}, "class_names"),
            ({"palette": [(0, 0, 0)] * 2}, "palette"),
        ],
    )
    def test_bad_arguments(self, kwargs, message):
        backbone = tiny_deconvnet().backbone
        with pytest.raises(ValueError, match=message):
            DeconvNetImageSegmenter(backbone, **{"num_classes": 3, **kwargs})

    def test_named_configuration_is_one_call_away(self):
        segmenter = DeconvNetImageSegmenter.from_preset("deconvnet_edge_small",
                                                        num_classes=4)
        assert segmenter.output_shape == (None, None, None, 4)
        assert segmenter.preprocessor.image_converter.image_size is None
        edge = DeconvNetImageSegmenter.from_preset("deconvnet_edge")
        assert edge.preprocessor.image_converter.image_size == (224, 224)
        assert isinstance(DeconvNetImageSegmenter.presets, dict)
