"""End-to-end runs of train, evaluate and predict through the CLI on tiny settings."""

import json

import numpy as np
import pytest
from model_fixtures import tiny_deconvnet, tiny_fcn8s
from PIL import Image

from keras_deconvnet.cli import main
from keras_deconvnet.data import SYNTHETIC_INFO

NUM_CLASSES = SYNTHETIC_INFO.num_classes


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    tiny_deconvnet(NUM_CLASSES, class_names=SYNTHETIC_INFO.class_names).save_to_preset(
        root / "deconvnet")
    tiny_fcn8s(NUM_CLASSES, image_shape=(None, None, 3)).save_to_preset(root / "fcn8s")
    return root


def test_train_resumes_and_reports(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--out", str(out), "--crop-size", "72", "--stage1-epochs", "1",
            "--stage2-epochs", "1", "--steps-per-epoch", "2", "--num-examples", "8",
            "--image-size", "80", "--gradient-accumulation-steps", "2",
            "--batchnorm-batches", "2", "--batchnorm-batch-size", "4"]
    assert main(args) == 0
    summary = json.loads((out / "train_summary.json").read_text())
    assert (out / "preset" / "task.json").exists()
    assert set(summary["history"]) == {"stage1", "stage2"}
    assert 0.0 <= summary["validation"]["mean_iou"] <= 1.0
    config = summary["training_config"]
    # The authors' solver unless a flag says otherwise.
    assert (config["gradient_accumulation_steps"], config["bias_lr_multiplier"],
            config["lr_schedule"], config["stage2"]["lr_step_size"]) == (2, 2.0, "step", 10000)
    assert (out / "stage2" / "batchnorm" / "COMPLETE.json").exists()
    printed = capsys.readouterr().out
    assert "mean IoU" in printed and "Weights sha256 (single worker of 1)" in printed
    # Running again finds both stages complete and does not train them again.
    assert main(args) == 0
    again = json.loads((out / "train_summary.json").read_text())
    assert len(again["history"]["stage2"]["loss"]) == 1


def test_train_bad_config_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["train", "--out", str(tmp_path / "x"), "--config", str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.json" in err[0]


def test_train_refuses_a_second_run_on_the_same_out(tmp_path, capsys):
    from keras_deconvnet.training import OutputDirLock

    out = tmp_path / "run"
    with OutputDirLock(out):
        code = main(["train", "--out", str(out), "--crop-size", "72", "--num-examples", "2",
                     "--image-size", "80", "--stage1-epochs", "1", "--stage2-epochs", "0"])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another training run" in err[0] and str(out) in err[0]


def test_train_multi_worker_too_late_is_one_line(tmp_path, capsys, monkeypatch):
    # In this process TensorFlow is running already: the strategy cannot be made.
    monkeypatch.setenv("TF_CONFIG", json.dumps(
        {"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 0}}))
    code = main(["train", "--out", str(tmp_path / "x"), "--strategy", "multi_worker"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert "MultiWorkerMirroredStrategy" in err[0] and "program start" in err[0]


def test_train_with_edgeboxes_proposals_dir(tmp_path, capsys):
    from keras_deconvnet.data import synthetic_dataset

    proposals = tmp_path / "edgeboxes"
    proposals.mkdir()
    for example in synthetic_dataset("train", 4, (80, 80), seed=0).as_numpy_iterator():
        # EdgeBoxes' MATLAB format: x y w h score, 1-based; one box per object.
        rows = [[x0 + 1, y0 + 1, x1 - x0, y1 - y0, 1.0]
                for y0, x0, y1, x1 in example["boxes"]]
        np.savetxt(proposals / f"{example['image_id'].decode()}.txt", rows)
    args = ["train", "--out", str(tmp_path / "run"), "--crop-size", "72",
            "--stage1-epochs", "0", "--stage2-epochs", "1", "--steps-per-epoch", "2",
            "--num-examples", "4", "--image-size", "80", "--val-split", "",
            "--gradient-accumulation-steps", "1", "--no-batchnorm-recompute",
            "--proposals-dir", str(proposals)]
    assert main(args) == 0
    assert (tmp_path / "run" / "stage2" / "COMPLETE.json").exists()
    # The files are what stage 2 reads: without them, an error naming the folder.
    args[args.index("--proposals-dir") + 1] = str(tmp_path / "missing")
    assert main([*args[:2], str(tmp_path / "run2"), *args[3:]]) == 1
    assert "missing" in capsys.readouterr().err


def test_evaluate_all_methods(saved_models, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main([
        "evaluate", "--model", str(saved_models / "deconvnet"),
        "--fcn", str(saved_models / "fcn8s"), "--num-examples", "2",
        "--image-size", "80", "--top-n", "3", "--out", str(out),
        "--methods", "whole", "proposals", "proposals_crf", "ensemble",
    ])
    assert code == 0
    results = json.loads((out / "evaluation.json").read_text())
    for method in ("whole", "proposals", "proposals_crf", "ensemble"):
        assert 0.0 <= results[method]["mean_iou"] <= 1.0
        assert (out / f"confusion_{method}.png").exists()
    assert results["num_images"] == 2
    assert "proposals_crf" in capsys.readouterr().out


def test_evaluate_rejects_a_class_count_mismatch(tmp_path):
    path = tmp_path / "m"
    tiny_deconvnet(3).save_to_preset(path)
    assert main(["evaluate", "--model", str(path), "--num-examples", "1"]) == 1


def test_predict_writes_pictures_and_skips_bad_files(saved_models, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((50, 70, 3), np.uint8)).save(images / "rgb.jpg")
    Image.fromarray(np.full((40, 30), 60000, np.uint16)).save(images / "deep.png")
    Image.fromarray(np.zeros((40, 30, 4), np.uint8)).save(images / "alpha.png")
    (images / "broken.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / "pred"
    code = main([
        "predict", *(str(images / n) for n in ("rgb.jpg", "broken.png", "deep.png",
                                                "alpha.png")),
        "--model", str(saved_models / "deconvnet"), "--out", str(out),
        "--top-n", "3",
    ])
    assert code == 1  # one file failed, the others were processed
    report = json.loads((out / "predictions.json").read_text())
    assert [f["image"].split("/")[-1] for f in report["failures"]] == ["broken.png"]
    assert len(report["predictions"]) == 3
    labels = Image.open(out / "rgb_labels.png")
    assert labels.mode == "P" and labels.size == (70, 50)
    assert Image.open(out / "deep_overlay.png").size[0] > 0


def test_predict_names_outputs_uniquely_and_skips_fifos(saved_models, tmp_path, capsys):
    import os

    for folder, suffix, value in (("a", "jpg", 30), ("b", "png", 220)):
        (tmp_path / folder).mkdir()
        Image.fromarray(np.full((40, 60, 3), value, np.uint8)).save(
            tmp_path / folder / f"x.{suffix}")
    os.mkfifo(tmp_path / "pipe.jpg")  # reading it would block forever
    out = tmp_path / "pred"
    code = main(["predict", str(tmp_path / "a/x.jpg"), str(tmp_path / "pipe.jpg"),
                 str(tmp_path / "b/x.png"), "--model", str(saved_models / "deconvnet"),
                 "--out", str(out), "--method", "whole"])
    assert code == 1  # the FIFO was skipped and reported
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert any("pipe.jpg: a FIFO, not an image file" in line for line in err), err
    report = json.loads((out / "predictions.json").read_text())
    assert [f["image"] for f in report["failures"]] == [str(tmp_path / "pipe.jpg")]
    entries = report["predictions"]
    assert [e["image"] for e in entries] == [str(tmp_path / "a/x.jpg"),
                                             str(tmp_path / "b/x.png")]
    files = [e[k] for e in entries for k in ("labels", "overlay")]
    assert len(set(files)) == 4 and all(os.path.exists(f) for f in files)
    assert entries[1]["labels"].endswith("x-2_labels.png")
