"""`deconvnet train`: its configuration from flags, and a failed start leaving no trace."""

import json

from keras_deconvnet.cli import build_parser, main
from keras_deconvnet.cli.train import training_config_from_args


def _config(*flags):
    args = build_parser().parse_args(["train", "--out", "x", *flags])
    return training_config_from_args(args)


def test_gradient_accumulation_steps_one_is_recorded_as_one(tmp_path):
    # It was recorded as null in the run's config.json (issue 23).
    config = _config("--gradient-accumulation-steps", "1")
    assert config.gradient_accumulation_steps == 1
    assert config.to_dict()["gradient_accumulation_steps"] == 1
    assert _config().gradient_accumulation_steps == 8  # the authors' iter_size
    path = tmp_path / "config.json"
    config.save(str(path))
    assert json.loads(path.read_text())["gradient_accumulation_steps"] == 1


def test_a_failed_start_writes_nothing_to_out(tmp_path, capsys):
    # The encoder weights cannot be loaded: the run stops before training, and --out
    # is not created (it held config.json and .lock, and the next run warned about
    # "resuming a run with changed settings").
    out = tmp_path / "run"
    code = main(["train", "--out", str(out), "--crop-size", "72", "--num-examples", "2",
                 "--image-size", "72", "--val-split", "",
                 "--vgg16-weights", str(tmp_path / "missing_vgg16.h5")])
    assert code != 0
    assert not out.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "missing_vgg16.h5" in err[-1]
