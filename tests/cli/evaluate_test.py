"""`deconvnet evaluate` with the authors' `.mat` proposal cache, and what the JSON of
`evaluate` and `predict` records (the inference settings, the seed, the image count)."""

import json

import numpy as np
import scipy.io
from model_fixtures import tiny_deconvnet
from PIL import Image

from keras_deconvnet.cli import main
from keras_deconvnet.data import SYNTHETIC_INFO, synthetic_dataset


def _write_cache(folder, size, boxes_of):
    folder.mkdir()
    for example in synthetic_dataset("val", 2, image_size=(size, size)).as_numpy_iterator():
        image_id = example["image_id"].decode()
        scipy.io.savemat(folder / f"{image_id}.mat", {"boxes_padded": boxes_of(size)})


def test_evaluate_reads_the_authors_mat_cache_and_records_its_settings(tmp_path, capsys):
    model = tmp_path / "model"
    tiny_deconvnet(SYNTHETIC_INFO.num_classes,
                   class_names=SYNTHETIC_INFO.class_names).save_to_preset(model)
    size = 80
    # 1-based inclusive boxes of the image padded by 80 on every side: the whole
    # image, and a box reaching 10 pixels into the padding.
    _write_cache(tmp_path / "cache", size, lambda s: np.array(
        [[s + 1, s + 1, 2 * s, 2 * s], [s - 9, s - 9, 2 * s - 20, 2 * s - 20]], float))
    out = tmp_path / "eval"
    args = ["evaluate", "--model", str(model), "--num-examples", "2", "--image-size",
            str(size), "--methods", "proposals", "--proposals-dir", str(tmp_path / "cache"),
            "--min-box-size", "0", "--seed", "0", "--no-plots"]
    assert main([*args, "--out", str(out)]) == 0
    record = json.loads((out / "evaluation.json").read_text())
    assert record["num_images"] == 2 and record["seed"] == 0
    settings = record["inference_config"]
    assert settings["proposals"]["class"] == "PaddedBoxProposals"
    assert settings["resampling"] == "matlab" and settings["top_n"] == 50
    assert 0.0 <= record["proposals"]["mean_iou"] <= 1.0

    # A box past the padded canvas: a one-line error naming the file, exit status 1.
    _write_cache(tmp_path / "bad", size, lambda s: np.array([[1, 1, 3 * s + 1, 20]], float))
    capsys.readouterr()
    bad = [a if a != str(tmp_path / "cache") else str(tmp_path / "bad") for a in args]
    assert main(bad) == 1
    error = capsys.readouterr().err.strip()
    assert "outside the padded" in error and ".mat" in error and "\n" not in error


def test_evaluate_records_the_default_settings(tmp_path):
    model = tmp_path / "model"
    tiny_deconvnet(SYNTHETIC_INFO.num_classes,
                   class_names=SYNTHETIC_INFO.class_names).save_to_preset(model)
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(model), "--num-examples", "1", "--image-size",
                 "80", "--methods", "whole", "--seed", "3", "--no-plots",
                 "--out", str(out)]) == 0
    record = json.loads((out / "evaluation.json").read_text())
    assert (record["num_images"], record["seed"], record["image_size"]) == (1, 3, 80)
    settings = record["inference_config"]
    assert settings["proposals"] == {
        "class": "SlidingWindowProposals",
        "config": {**settings["proposals"]["config"], "max_proposals": None}}
    assert (settings["context"], settings["score_mode"]) == (1.2, "logits")


def test_predict_records_its_settings(tmp_path):
    model = tmp_path / "model"
    tiny_deconvnet(SYNTHETIC_INFO.num_classes,
                   class_names=SYNTHETIC_INFO.class_names).save_to_preset(model)
    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (75, 101, 3), np.uint8)).save(
        photo, quality=90)
    out = tmp_path / "preds"
    assert main(["predict", str(photo), "--model", str(model), "--out", str(out),
                 "--top-n", "3", "--context", "1.1"]) == 0
    record = json.loads((out / "predictions.json").read_text())
    assert (record["num_images"], record["seed"], record["method"]) == (1, 0, "proposals")
    settings = record["inference_config"]
    assert (settings["top_n"], settings["context"], settings["resampling"]) == (3, 1.1, "matlab")
