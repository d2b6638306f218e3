import h5py
import keras
import numpy as np
import pytest
from keras.src.legacy.saving import legacy_h5_format

from keras_deconvnet.models import (
    DeconvNetBackbone,
    DeconvNetImageSegmenter,
    load_vgg16_weights,
    vgg16_weights,
)

# VGG16's widths and depths with a small head, so the test stays light.
VGG_WIDTHS = dict(image_shape=(64, 64, 3), fc_units=8, fc_kernel_size=2)


def DeconvNet(**config):  # noqa: N802 (reads like the class it builds)
    backbone = DeconvNetBackbone(**config)
    return DeconvNetImageSegmenter(
        backbone, 3, preprocessor=DeconvNetImageSegmenter.default_preprocessor(backbone)
    )


def _write_vgg16_file(path, include_top=False):
    """Writes Keras's published VGG16 `.h5` layout from a random VGG16."""
    vgg = keras.applications.VGG16(weights=None, include_top=include_top)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, vgg)
    return vgg


def test_encoder_gets_vgg16_weights(tmp_path):
    path = tmp_path / vgg16_weights.NOTOP_FILE
    vgg = _write_vgg16_file(path)
    model = DeconvNet(**VGG_WIDTHS)
    decoder_before = model.backbone.get_layer("deconv3_1").get_weights()[0].copy()
    with pytest.warns(UserWarning, match="fc6 and fc7 keep their random initialisation"):
        loaded = load_vgg16_weights(model, path)
    assert len(loaded) == 13 and loaded[0] == "block1_conv1"
    for name in ["block3_conv2", "block5_conv3"]:
        ours, theirs = model.backbone.get_layer(name), vgg.get_layer(name)
        for a, b in zip(ours.get_weights(), theirs.get_weights()):
            np.testing.assert_array_equal(a, b)
    # BGR-trained conv1_1: its input channels are reversed for our RGB input.
    ours = model.backbone.get_layer("block1_conv1").get_weights()
    theirs = vgg.get_layer("block1_conv1").get_weights()
    np.testing.assert_array_equal(ours[0], theirs[0][:, :, ::-1, :])
    np.testing.assert_array_equal(ours[1], theirs[1])
    np.testing.assert_array_equal(model.backbone.get_layer("deconv3_1").get_weights()[0],
                                  decoder_before)


def test_imagenet_reads_the_keras_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    _write_vgg16_file(tmp_path / "models" / vgg16_weights.NOTOP_FILE)
    assert len(load_vgg16_weights(DeconvNet(**VGG_WIDTHS), "imagenet")) == 13


def test_missing_file_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="never downloads") as error:
        load_vgg16_weights(DeconvNet(**VGG_WIDTHS), "imagenet")
    # The hint names the file that holds fc6/fc7 (the paper initialises them too).
    message = str(error.value)
    assert "include_top=True" in message and "include_top=False)`" not in message
    assert f"it writes {vgg16_weights.TOP_FILE}" in message
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        load_vgg16_weights(DeconvNet(**VGG_WIDTHS), tmp_path / "nope.h5")


def test_not_a_weights_file(tmp_path):
    path = tmp_path / "bad.h5"
    path.write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError, match="HDF5"):
        load_vgg16_weights(DeconvNet(**VGG_WIDTHS), path)


def test_mismatched_widths_leave_the_model_untouched(tmp_path):
    path = tmp_path / "vgg.h5"
    _write_vgg16_file(path)
    model = DeconvNetImageSegmenter.from_preset("deconvnet_edge")
    before = [w.numpy().copy() for w in model.weights]
    with pytest.raises(ValueError, match="do not fit layer|has no layer"):
        load_vgg16_weights(model, path)
    for b, w in zip(before, model.weights):
        np.testing.assert_array_equal(b, w.numpy())


@pytest.mark.slow
def test_top_file_initialises_fc6_and_fc7(tmp_path):
    path = tmp_path / vgg16_weights.TOP_FILE
    vgg = _write_vgg16_file(path, include_top=True)
    model = DeconvNetImageSegmenter.from_preset("deconvnet_vgg16_voc", num_classes=3)
    loaded = load_vgg16_weights(model, path)
    assert loaded[-2:] == ["fc6", "fc7"]
    fc1 = vgg.get_layer("fc1").get_weights()[0]
    fc6 = model.backbone.get_layer("fc6").get_weights()[0]
    np.testing.assert_array_equal(fc6.reshape(fc1.shape), fc1)


def test_a_file_without_the_top_warns_that_fc6_and_fc7_stay_random(tmp_path):
    path = tmp_path / vgg16_weights.NOTOP_FILE
    _write_vgg16_file(path)
    model = DeconvNet(**VGG_WIDTHS)
    fc6_before = model.backbone.get_layer("fc6").get_weights()[0].copy()
    with pytest.warns(UserWarning, match=f"no classifier.*{vgg16_weights.TOP_FILE}.*"
                      "include_top=True"):
        loaded = load_vgg16_weights(model, path)
    assert "fc6" not in loaded and len(loaded) == 13
    np.testing.assert_array_equal(model.backbone.get_layer("fc6").get_weights()[0],
                                  fc6_before)


def test_no_warning_when_fc6_and_fc7_are_not_asked_for(tmp_path, recwarn):
    path = tmp_path / vgg16_weights.NOTOP_FILE
    _write_vgg16_file(path)
    load_vgg16_weights(DeconvNet(**VGG_WIDTHS), path, load_fc=False)
    assert not [w for w in recwarn if "random initialisation" in str(w.message)]
