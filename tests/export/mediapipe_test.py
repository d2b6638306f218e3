"""MediaPipe Tasks' ImageSegmenter (pip `mediapipe`, CPU) runs our exported TFLite files
unchanged: float32, float16 and int8 (uint8 in and out), as an Android, iOS or web app
would load them, and its category mask equals the argmax of our own interpreter."""

import numpy as np
import pytest

from keras_deconvnet.export.runtimes import litert_runner

vision = pytest.importorskip(
    "mediapipe.tasks.python.vision", reason="mediapipe has no wheel for this platform"
)

MEDIAPIPE_FORMATS = ("tflite_float32", "tflite_float16", "tflite_int8")


def _segment(path, images):
    import mediapipe as mp
    from mediapipe.tasks.python.core.base_options import BaseOptions

    options = vision.ImageSegmenterOptions(
        base_options=BaseOptions(model_asset_path=str(path)),
        output_category_mask=True,
        output_confidence_masks=True,
    )
    categories, confidences = [], []
    with vision.ImageSegmenter.create_from_options(options) as segmenter:
        labels = segmenter.labels
        for image in images:
            result = segmenter.segment(
                mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image))
            )
            categories.append(np.squeeze(result.category_mask.numpy_view()).copy())
            confidences.append(np.stack(
                [np.squeeze(mask.numpy_view()) for mask in result.confidence_masks], -1
            ))
    return labels, np.stack(categories), np.stack(confidences)


@pytest.mark.parametrize("fmt", MEDIAPIPE_FORMATS)
def test_mediapipe_category_mask_equals_our_labels(trained, exported, fmt):
    _, _, images, _ = trained
    # Images at the model's size: MediaPipe's resampling is the identity, so its mask
    # and our interpreter see the same pixels.
    pixels = images.round().clip(0, 255).astype(np.uint8)
    labels, category, confidence = _segment(exported.paths[fmt], pixels)
    ours = litert_runner(exported.paths[fmt])(pixels.astype(np.float32))
    assert labels == ["background", "red", "green", "blue"]
    assert category.shape == pixels.shape[:3] and category.dtype == np.uint8
    # Same runtime family, same input: identical labels but for exact score ties.
    agreement = np.mean(category == ours.argmax(-1))
    assert agreement >= 0.999, (fmt, agreement)
    # Activation NONE: the confidence masks are the file's probabilities (int8:
    # dequantized in steps of 1/256).
    tolerance = 1 / 256 + 1e-6 if fmt == "tflite_int8" else 1e-4
    np.testing.assert_allclose(confidence, ours, rtol=0, atol=tolerance)


def test_mediapipe_segments_any_image_size(exported):
    pixels = np.random.default_rng(0).integers(0, 256, (1, 97, 131, 3), dtype=np.uint8)
    _, category, confidence = _segment(exported.paths["tflite_int8"], pixels)
    # Masks come back at the image's own size.
    assert category.shape == (1, 97, 131) and confidence.shape == (1, 97, 131, 4)
    assert category.max() < 4


def _jpeg_photo(height, width, seed):
    """A photo-like JPEG at an odd size: smooth colour regions, fine texture on the
    right half, sensor-like noise, encoded at quality 90 (no photos ship with the
    repository). Returns the decoded pixels, as a client would see them."""
    import io

    from PIL import Image

    from keras_deconvnet.export import synthetic_images

    base = synthetic_images(1, (height, width), seed=seed)[0]
    yy, xx = np.mgrid[0:height, 0:width]
    texture = 25 * np.sin(xx / 1.7 + yy / 2.3) * (xx > width // 2)
    pixels = np.clip(base + texture[..., None], 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


@pytest.mark.parametrize("size", [(427, 640), (500, 333)])
def test_real_photo_parity_at_their_own_size(trained, exported, size):
    """The README's real-photo row: MediaPipe's masks at a JPEG's own size against
    local whole-image inference (`whole_image_probabilities`: bilinear warp to the
    model, bilinear resize of the scores back, argmax). At the model's size they are
    equal (above); at a photo's own size MediaPipe resamples differently, and its
    category mask is not even the argmax of its own confidence masks."""
    from keras_deconvnet.inference.whole_image import whole_image_probabilities

    model, *_ = trained
    pixels = _jpeg_photo(*size, seed=size[0])
    _, category, confidence = _segment(exported.paths["tflite_float32"], pixels[None])
    local = whole_image_probabilities(model, pixels).argmax(-1)
    category_agreement = np.mean(category[0] == local)
    confidence_agreement = np.mean(confidence[0].argmax(-1) == local)
    own_agreement = np.mean(confidence[0].argmax(-1) == category[0])
    # MediaPipe's sampling, reconstructed: corner-aligned (source = destination x scale,
    # no half-pixel centres), then the probabilities resized back bilinearly.
    import tensorflow as tf

    corner = tf.compat.v1.image.resize_bilinear(
        pixels[None].astype(np.float32), (64, 64), half_pixel_centers=False
    ).numpy()
    probabilities = litert_runner(exported.paths["tflite_float32"])(corner)
    emulated = tf.image.resize(probabilities, size, "bilinear").numpy()[0].argmax(-1)
    emulated_agreement = np.mean(category[0] == emulated)
    print(f"\n{size}: category mask vs local {category_agreement:.4f}, confidence argmax "
          f"vs local {confidence_agreement:.4f}, category vs own confidence argmax "
          f"{own_agreement:.4f}, category vs corner-aligned emulation "
          f"{emulated_agreement:.4f}")
    assert emulated_agreement > category_agreement + 0.05
    # Measured (README): 0.73 and 0.78, 0.75 and 0.79, 0.91 and 0.93, 0.90 and 0.92.
    assert category.shape[1:] == size
    assert 0.6 < category_agreement < 0.95
    assert own_agreement < 0.99
