import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_deconvnet.export import export_saved_model, model_interface, next_version
from keras_deconvnet.inference import whole_image

# Runs in a fresh interpreter: plain TensorFlow, keras_deconvnet never imported.
LOAD_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf

    path, data_path = sys.argv[1:3]
    loaded = tf.saved_model.load(path)
    data = np.load(data_path)
    dense = loaded.signatures["serving_default"](images=tf.constant(data["images"]))
    encoded = [data[f"bytes{i}"].tobytes() for i in range(3)]
    from_bytes = loaded.signatures["predict_image_bytes"](image_bytes=tf.constant(encoded))
    np.savez(
        data_path.replace(".npz", "_out.npz"),
        labels=dense["labels"].numpy(),
        probabilities=dense["probabilities"].numpy(),
        bytes_labels=from_bytes["labels"].numpy(),
        image_sizes=from_bytes["image_sizes"].numpy(),
    )
    print(json.dumps({
        "signatures": sorted(loaded.signatures),
        "imported": sorted(m for m in sys.modules if m.startswith("keras_deconvnet")),
    }))
    """
)


def _encode(image, fmt="PNG"):
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return np.frombuffer(buffer.getvalue(), np.uint8)


def test_saved_model_loads_and_runs_without_keras_deconvnet(trained, exported, tmp_path):
    model, _, images, _ = trained
    version_dir = exported.paths["saved_model"]
    assert version_dir.name == "1" and version_dir.parent.name == "deconvnet"
    assert (version_dir / "saved_model.pb").is_file()
    assert (version_dir / "variables").is_dir()
    config = json.loads((version_dir / "export_config.json").read_text())
    assert config["preprocessing"]["class_name"] == "DeconvNetImageConverter"
    assert "half-pixel" in config["signatures"]["predict_image_bytes"]["convention"]
    assert config["class_names"] == ["background", "red", "green", "blue"]
    assert config["model_config"]["num_classes"] == 4

    rgb = images[0].round().astype(np.uint8)
    gray = Image.fromarray(rgb).convert("L").resize((30, 20))  # width 30, height 20
    rgba = Image.fromarray(rgb).convert("RGBA").resize((50, 40))
    data_path = tmp_path / "data.npz"
    np.savez(
        data_path,
        images=rgb[None].astype(np.float32),
        bytes0=_encode(Image.fromarray(rgb)),
        bytes1=_encode(gray),
        bytes2=_encode(rgba),
    )
    result = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, str(version_dir), str(data_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert info["signatures"] == ["predict_image_bytes", "serving_default"]
    assert info["imported"] == []

    out = np.load(tmp_path / "data_out.npz")
    expected = model_interface.inference_function(model)(rgb[None].astype(np.float32)).numpy()
    np.testing.assert_allclose(out["probabilities"], expected, atol=1e-5)
    np.testing.assert_array_equal(out["labels"], expected.argmax(-1))
    # Bytes: the image at the model's size gives the dense signature's labels; other
    # sizes come back at their own size, padded with -1 to the batch's largest.
    assert out["image_sizes"].tolist() == [[64, 64], [20, 30], [40, 50]]
    assert out["bytes_labels"].shape == (3, 64, 64)
    np.testing.assert_array_equal(out["bytes_labels"][0], out["labels"][0])
    assert (out["bytes_labels"][1, 20:, :] == -1).all()
    assert (out["bytes_labels"][1, :, 30:] == -1).all()
    assert (out["bytes_labels"][1, :20, :30] >= 0).all()
    assert (out["bytes_labels"][2, :40, :50] >= 0).all()
    # Other sizes follow the whole-image convention (checked against an independent
    # implementation in test_served_labels_agree_with_local_inference).
    gray_rgb = np.asarray(gray.convert("RGB"))
    local = whole_image.whole_image_probabilities(model, gray_rgb).argmax(-1)
    assert np.mean(out["bytes_labels"][1, :20, :30] == local) >= 0.999


def _rule(model, image):
    """The resize convention, written out with plain TensorFlow ops: resize to the
    model input (bilinear, half-pixel), subtract the mean, predict, resize the raw
    scores back (bilinear, half-pixel), softmax, argmax."""
    import tensorflow as tf

    height, width = model.input_shape[1:3]
    offset = np.asarray(model.preprocessor.image_converter.offset, np.float32)
    resized = tf.image.resize(image[None].astype(np.float32), (height, width), "bilinear")
    scores = model(resized + offset, training=False)
    scores = tf.image.resize(scores, image.shape[:2], "bilinear")
    return tf.argmax(tf.nn.softmax(scores, -1), -1)[0].numpy()


def test_served_labels_agree_with_local_inference(trained, exported):
    """`predict_image_bytes` and local whole-image inference give the same labels at
    the images' own sizes (12 images, 128x128 and 211x157)."""
    from model_fixtures import smooth_images

    from keras_deconvnet.export import ParityConfig, served_parity

    model = trained[0]
    images = [*smooth_images(6, (128, 128), seed=1), *smooth_images(6, (211, 157), seed=2)]
    row = served_parity(model, exported.paths["saved_model"], images, ParityConfig(runs=1))
    assert row["format"] == "saved_model_bytes" and row["passed"]
    assert row["label_agreement"] >= 99.9, row["label_agreement"]  # measured 100.0
    assert row["images"][-1] == [211, 157]
    # The local side is the convention itself: an independent implementation agrees.
    for image in (images[0], images[-1]):
        local = whole_image.whole_image_probabilities(model, image).argmax(-1)
        assert np.mean(local == _rule(model, image)) >= 0.999
    # The previous served convention (labels at the model size, resized back with
    # nearest neighbour) would not pass: the check can tell them apart.
    import tensorflow as tf

    old, local = [], []
    for image in images:
        small = model_interface.inference_function(model)(
            tf.image.resize(image[None].astype(np.float32), model.input_shape[1:3])
        ).numpy().argmax(-1)[..., None]
        old.append(tf.image.resize(small, image.shape[:2], "nearest").numpy().ravel())
        local.append(whole_image.whole_image_probabilities(model, image).argmax(-1).ravel())
    assert np.mean(np.concatenate(old) == np.concatenate(local)) < 0.999
    with pytest.raises(ValueError, match="RGB"):
        served_parity(model, exported.paths["saved_model"], [images[0][..., :2]])


def photo_like(height: int, width: int, seed: int) -> np.ndarray:
    """A photograph's statistics at its own odd size: smooth gradients (sky,
    lighting), fine texture (grain, foliage) and sharp-edged objects."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([
        120 + 90 * np.sin(x / (31 + 7 * seed) + y / 53),
        100 + 70 * np.cos(y / 29 - x / 97),
        80 + 60 * np.sin((x + y) / 41),
    ], -1)
    image += rng.normal(0, 14, (height, width, 3))
    for _ in range(5):
        top, left = rng.integers(0, height - 20), rng.integers(0, width - 20)
        image[top:top + rng.integers(10, height // 2), left:left + rng.integers(10, width // 2)] = (
            rng.uniform(0, 255, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def test_served_labels_equal_local_on_jpeg_photos(trained, exported):
    """JPEG photos at their own sizes: `predict_image_bytes` and `deconvnet predict`'s
    decoding give the same pixels (accurate integer DCT on both sides), hence the
    same labels on 100% of the pixels (the fast DCT of plain `tf.io.decode_image`
    gave 92-98%)."""
    import tensorflow as tf

    from keras_deconvnet.export import ParityConfig, served_parity
    from keras_deconvnet.export.parity import encode_jpeg
    from keras_deconvnet.inference.images import decode_image_bytes

    model = trained[0]
    photos = [photo_like(427, 640, 0), photo_like(500, 333, 1), photo_like(241, 163, 2)]
    row = served_parity(model, exported.paths["saved_model"], photos,
                        ParityConfig(runs=1), encoding="jpeg")
    assert row["format"] == "saved_model_jpeg" and row["passed"]
    assert row["label_agreement"] == 100.0
    assert row["images"] == [[427, 640], [500, 333], [241, 163]]
    # The decoders themselves agree bit for bit, and the fast DCT would not.
    signature = tf.saved_model.load(str(exported.paths["saved_model"])).signatures[
        "predict_image_bytes"]
    data = encode_jpeg(photos[0])
    fast = tf.io.decode_image(data, channels=3).numpy()
    local = decode_image_bytes(data)
    assert np.mean(np.all(fast == local, axis=-1)) < 0.9
    served = signature(image_bytes=tf.constant([data]))
    assert served["image_sizes"].numpy().tolist() == [[427, 640]]


def test_saved_model_cli_lists_signatures(exported):
    cli = Path(sys.executable).with_name("saved_model_cli")
    if not cli.exists():
        pytest.skip("saved_model_cli is not installed next to this Python")
    result = subprocess.run(
        [str(cli), "show", "--dir", str(exported.paths["saved_model"]), "--all"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for text in (
        "signature_def['serving_default']", "signature_def['predict_image_bytes']",
        "inputs['images']", "inputs['image_bytes']", "outputs['probabilities']",
        "outputs['labels']", "outputs['image_sizes']", "shape: (-1, 64, 64, 3)",
    ):
        assert text in result.stdout


def test_versions_and_models_config(make_model, tmp_path):
    model = make_model()
    base = tmp_path / "serving"
    first = export_saved_model(model, base, name="seg")
    second = export_saved_model(model, base, name="seg")
    assert (first.name, second.name) == ("1", "2")
    assert next_version(base / "seg") == 3
    export_saved_model(model, base, name="other", version=7)
    config = (base / "models.config").read_text()
    assert config.startswith("model_config_list {")
    assert config.count("config {") == 2
    assert 'base_path: "/models/seg"' in config and "model_version_policy { all {} }" in config
    assert 'name: "other"' in config and 'model_platform: "tensorflow"' in config

    with pytest.raises(FileExistsError, match="Version 2"):
        export_saved_model(model, base, name="seg", version=2)
    # Nothing half-written: only the version directories are there.
    assert sorted(p.name for p in (base / "seg").iterdir()) == ["1", "2"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "a/b"}, "`name` must be"),
        ({"version": 0}, "`version` must be a positive int"),
        ({"class_names": ["a", "b"]}, "one name per class"),
        ({"image_shape": (32, 32)}, "must match the model's fixed input size"),
    ],
)
def test_saved_model_bad_arguments_write_nothing(make_model, tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        export_saved_model(make_model(), tmp_path / "serving", **kwargs)
    assert not (tmp_path / "serving").exists()
