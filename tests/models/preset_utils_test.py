"""What keras-hub's preset machinery lacks and we add: safety checks, offline hub
handles, atomic saving with our metadata, and the one loader of the CLI."""

import json
import shutil

import numpy as np
import pytest
from model_fixtures import smooth_images, tiny_deconvnet

from keras_deconvnet.cli import main
from keras_deconvnet.models import (
    DeconvNetImageSegmenter,
    PresetError,
    describe_preset,
    load_segmenter,
    preset_utils,
)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A calibrated tiny DeconvNet preset; tests copy it before changing it."""
    path = tmp_path_factory.mktemp("presets") / "tiny"
    tiny_deconvnet(calibrated=True, class_names=["background", "cat", "dog"]).save_to_preset(
        path, training_data={"name": "synthetic", "n": 4},
        metrics={"val_mean_iou": 0.5}, description="tiny test preset",
    )
    return path


@pytest.fixture
def copy_of(saved, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(saved, target)
    return target


def _edit_json(path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


class TestMetadata:
    def test_our_entry_in_keras_hubs_metadata(self, saved):
        meta = json.loads((saved / "metadata.json").read_text())
        ours = meta["keras_deconvnet"]
        assert ours["class_names"] == ["background", "cat", "dog"]
        assert ours["metrics"] == {"val_mean_iou": 0.5}
        assert ours["training_data"] == {"name": "synthetic", "n": 4}
        assert meta["parameter_count"] > 0 and meta["keras_hub_version"]

    def test_describe(self, saved):
        d = describe_preset(saved)
        assert d["class_name"] == "DeconvNetImageSegmenter" and d["num_classes"] == 3
        assert "task.weights.h5" in d["files"]
        named = describe_preset("deconvnet_edge")
        assert named["named"] and named["config"]["fc_units"] == 512


class TestRejects:
    def test_unregistered_class(self, copy_of):
        _edit_json(copy_of / "task.json", lambda c: c["config"]["backbone"].update(
            registered_name="evil_pkg>Backdoor", class_name="Backdoor",
            module="keras_deconvnet.models.backdoor"))
        with pytest.raises(PresetError, match="evil_pkg>Backdoor"):
            load_segmenter(copy_of)

    def test_foreign_module(self, copy_of):
        _edit_json(copy_of / "task.json", lambda c: c["config"].update(
            activation={"module": "os", "class_name": "system", "config": "rm -rf /",
                        "registered_name": None}))
        with pytest.raises(PresetError, match="module 'os'"):
            DeconvNetImageSegmenter.from_preset(str(copy_of))

    def test_lambda(self, copy_of):
        lam = {"module": "keras.layers", "class_name": "Lambda", "registered_name": None,
               "config": {"function": {"class_name": "__lambda__", "config": {}}}}
        _edit_json(copy_of / "image_converter.json",
                   lambda c: c["config"].update(extra=lam))
        with pytest.raises(PresetError, match="Lambda"):
            load_segmenter(copy_of)

    def test_keras_hub_base_classes_check_too(self, copy_of):
        """keras_hub's own loader deserializes through our from_config, which checks."""
        import keras_hub

        _edit_json(copy_of / "task.json", lambda c: c["config"].update(
            palette={"module": "os", "class_name": "system", "config": "x",
                     "registered_name": None}))
        with pytest.raises(PresetError, match="module 'os'"):
            keras_hub.models.ImageSegmenter.from_preset(str(copy_of))

    def test_saving_a_lambda_writes_nothing(self, tmp_path):
        import keras

        segmenter = tiny_deconvnet()
        segmenter.preprocessor.image_converter.extra = keras.layers.Lambda(lambda t: t)
        lam = {"class_name": "Lambda", "config": {}}
        original = segmenter.get_config

        def get_config():
            return {**original(), "activation": lam}

        segmenter.get_config = get_config
        with pytest.raises(PresetError, match="Lambda"):
            segmenter.save_to_preset(tmp_path / "p")
        assert list(tmp_path.iterdir()) == []

    def test_not_a_preset(self, tmp_path):
        with pytest.raises(PresetError, match="neither a named configuration"):
            load_segmenter("deconvnet_resnet")
        (tmp_path / "model.h5").write_bytes(b"")
        with pytest.raises(PresetError, match="is a file"):
            load_segmenter(tmp_path / "model.h5")
        (tmp_path / "empty").mkdir()
        with pytest.raises(PresetError, match="no config.json"):
            load_segmenter(tmp_path / "empty")

    def test_corrupt_json(self, copy_of):
        (copy_of / "task.json").write_text('{"class_name": ')
        with pytest.raises(PresetError, match="task.json.*not a readable JSON"):
            load_segmenter(copy_of)


class TestHubHandles:
    @pytest.mark.parametrize("handle", ["kaggle://someone/deconvnet/keras/voc",
                                        "hf://someone/deconvnet"])
    def test_offline_handle_fails_fast_in_one_line(self, handle, monkeypatch):
        import time

        monkeypatch.setattr(preset_utils, "_host_reachable", lambda host: False)
        start = time.perf_counter()
        with pytest.raises(PresetError, match="needs network access") as info:
            load_segmenter(handle)
        assert "\n" not in str(info.value) and time.perf_counter() - start < 2

    def test_the_real_probe_answers_within_its_timeout(self):
        import time

        start = time.perf_counter()
        reachable = preset_utils._host_reachable("huggingface.co", timeout=2.0)
        assert isinstance(reachable, bool) and time.perf_counter() - start < 3

    def test_unknown_scheme(self):
        with pytest.raises(PresetError, match="Unknown preset scheme"):
            load_segmenter("ftp://x/y")


class TestWriting:
    def test_refuses_a_non_empty_directory(self, tmp_path):
        segmenter = tiny_deconvnet()
        target = tmp_path / "p"
        target.mkdir()
        segmenter.save_to_preset(target)  # an empty directory is fine
        with pytest.raises(FileExistsError, match="overwrite=True"):
            segmenter.save_to_preset(target)
        tiny_deconvnet(num_classes=5).save_to_preset(target, overwrite=True)
        assert load_segmenter(target).output_shape[-1] == 5
        assert [p.name for p in tmp_path.iterdir()] == ["p"]  # no temporary leftovers

    def test_a_failed_overwrite_keeps_the_old_preset(self, saved, copy_of, monkeypatch):
        from keras_hub.models import Backbone

        def fail(self, preset_dir, max_shard_size=10):
            raise OSError("disk full")

        monkeypatch.setattr(Backbone, "save_to_preset", fail)
        with pytest.raises(OSError, match="disk full"):
            tiny_deconvnet().save_to_preset(copy_of, overwrite=True)
        assert (copy_of / "model.weights.h5").read_bytes() == \
            (saved / "model.weights.h5").read_bytes()
        assert sorted(p.name for p in copy_of.parent.iterdir()) == ["copy"]

    def test_metrics_must_be_json(self, tmp_path):
        with pytest.raises(ValueError, match="JSON"):
            tiny_deconvnet().save_to_preset(tmp_path / "p", metrics={"iou": object()})
        assert list(tmp_path.iterdir()) == []


class TestLoadSegmenter:
    def test_named_directory_and_keras_file(self, saved, tmp_path):
        assert load_segmenter("fcn8s_edge_small", num_classes=4).output_shape[-1] == 4
        images = smooth_images(1)
        from_preset = load_segmenter(saved)
        from_preset.save(tmp_path / "m.keras")
        np.testing.assert_array_equal(
            load_segmenter(tmp_path / "m.keras").predict(images, verbose=0),
            from_preset.predict(images, verbose=0),
        )


class TestCommandLine:
    def test_list(self, capsys):
        assert main(["presets"]) == 0
        out = capsys.readouterr().out
        assert "deconvnet_edge_small" in out and "fcn8s_vgg16_voc" in out

    def test_describe_and_check(self, saved, capsys):
        assert main(["presets", str(saved), "--check"]) == 0
        out = capsys.readouterr().out
        assert "tiny test preset" in out and "cat" in out and "keras-hub loaded" in out
        assert main(["presets", str(saved), "--json"]) == 0
        described = json.loads(capsys.readouterr().out)
        assert described["metadata"]["keras_deconvnet"]["class_names"][1] == "cat"

    def test_broken_preset_is_one_line(self, copy_of, capsys):
        (copy_of / "config.json").unlink()
        assert main(["presets", str(copy_of), "--check"]) == 1
        assert "no config.json" in capsys.readouterr().err


class TestFilesThatAreNotFiles:
    """Issue 24: a FIFO task.json hung both loaders; links were followed out of the preset.

    Each load runs in a daemon thread joined with a timeout, so a regression fails
    instead of hanging the suite.
    """

    @staticmethod
    def _load(function, *args, timeout=120.0):
        import threading

        outcome = {}

        def target():
            try:
                outcome["value"] = function(*args)
            except BaseException as e:  # noqa: BLE001 (reported to the test)
                outcome["error"] = e

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        thread.join(timeout)
        assert not thread.is_alive(), f"{function.__name__} hung"
        return outcome

    @pytest.mark.parametrize("name", ["task.json", "config.json", "model.weights.h5"])
    def test_a_fifo_is_refused_in_one_line(self, copy_of, name):
        import os

        (copy_of / name).unlink()
        os.mkfifo(copy_of / name)
        loaders = (load_segmenter, DeconvNetImageSegmenter.from_preset, describe_preset,
                   preset_utils.check_preset)
        for loader in loaders:
            outcome = self._load(loader, str(copy_of))
            error = outcome.get("error")
            assert isinstance(error, PresetError), (loader, outcome)
            assert f"`{name}` in the preset" in str(error) and "a FIFO" in str(error)
            assert "\n" not in str(error)

    def test_read_json_refuses_a_fifo_without_blocking(self, tmp_path):
        import os

        os.mkfifo(tmp_path / "x.json")
        outcome = self._load(preset_utils.read_json, tmp_path / "x.json", timeout=30)
        assert "is a FIFO, not a JSON file" in str(outcome["error"])

    def test_a_device_and_links_leaving_the_folder_are_refused(self, copy_of, saved, tmp_path):
        weights = copy_of / "model.weights.h5"
        weights.unlink()
        weights.symlink_to("/dev/zero")
        with pytest.raises(PresetError, match="symbolic link to '/dev/zero', outside"):
            load_segmenter(str(copy_of))
        weights.unlink()
        outside = tmp_path / "outside.h5"
        shutil.copy(saved / "model.weights.h5", outside)
        weights.symlink_to(outside)
        with pytest.raises(PresetError, match="outside the preset"):
            DeconvNetImageSegmenter.from_preset(str(copy_of))

    def test_links_inside_the_folder_still_load(self, copy_of, saved):
        (copy_of / "weights").mkdir()
        (copy_of / "model.weights.h5").rename(copy_of / "weights" / "model.weights.h5")
        (copy_of / "model.weights.h5").symlink_to("weights/model.weights.h5")
        model = load_segmenter(str(copy_of))
        images = smooth_images(1)
        np.testing.assert_array_equal(model.predict(images, verbose=0),
                                      load_segmenter(str(saved)).predict(images, verbose=0))
