import json
import shutil
import sys
import types
import warnings

import keras
import numpy as np
import pytest

from keras_deconvnet.cli import main
from keras_deconvnet.data import SYNTHETIC_INFO
from keras_deconvnet.models import (
    DeconvNet,
    EnsembleSegmenter,
    FCN8s,
    PresetError,
    describe_preset,
    load_preset,
    preset_dataset_info,
    preset_io,
)
from keras_deconvnet.preprocessing import PREPROCESSING

TINY = dict(
    num_classes=6,
    image_shape=(64, 64, 3),
    block_filters=(4, 4, 8, 8, 8),
    fc_units=16,
    fc_kernel_size=2,
)
FILES = {"config.json", "metadata.json", "preprocessor.json", "model.weights.h5"}


def _images(n=2):
    return np.random.default_rng(0).normal(size=(n, 64, 64, 3)).astype("float32")


def _trained(model):
    """A few optimizer steps, so weights and BatchNorm statistics leave their init."""
    x = _images(4)
    y = (x[..., 0] > 0).astype("int32")
    # Eager: tracing a train step would cost more than the two steps themselves.
    model.compile(optimizer=keras.optimizers.Adam(1e-2), run_eagerly=True,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=1, batch_size=2, verbose=0)
    return model


@pytest.fixture(scope="module")
def trained():
    return _trained(DeconvNet(**TINY))


@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory):
    """A trained tiny DeconvNet preset; tests copy it before changing it."""
    path = tmp_path_factory.mktemp("presets") / "tiny"
    trained.save_to_preset(
        path, dataset_info=SYNTHETIC_INFO, training_data={"name": "synthetic", "n": 4},
        metrics={"val_mean_iou": np.float32(0.5)}, description="tiny test preset",
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


class TestRoundTrip:
    def test_layout_and_metadata(self, saved, trained):
        assert {p.name for p in saved.iterdir()} == FILES
        config = json.loads((saved / "config.json").read_text())
        assert set(config) == {"module", "class_name", "config", "registered_name"}
        assert config["registered_name"] == "keras_deconvnet>DeconvNet"
        meta = json.loads((saved / "metadata.json").read_text())
        assert meta["parameter_count"] == trained.count_params()
        assert meta["classes"]["names"] == list(SYNTHETIC_INFO.class_names)
        assert meta["classes"]["palette"] == SYNTHETIC_INFO.palette[:6].tolist()
        assert meta["input_shape"] == [64, 64, 3]
        assert meta["preprocessing"] == json.loads(json.dumps(PREPROCESSING))
        assert meta["metrics"] == {"val_mean_iou": 0.5}
        assert meta["training_data"] == {"name": "synthetic", "n": 4}
        for key in ("keras_deconvnet_version", "keras_version", "tensorflow_version",
                    "date_saved"):
            assert meta[key]
        preprocessor = json.loads((saved / "preprocessor.json").read_text())
        assert preprocessor["config"] == meta["preprocessing"]

    def test_trained_predictions_are_reproduced_exactly(self, saved, trained):
        loaded = DeconvNet.from_preset(saved)
        assert isinstance(loaded, DeconvNet)
        x = _images()
        np.testing.assert_array_equal(loaded.predict(x, verbose=0),
                                      trained.predict(x, verbose=0))

    def test_file_url_and_generic_loader(self, saved):
        assert isinstance(DeconvNet.from_preset(f"file://{saved}"), DeconvNet)
        assert isinstance(load_preset(str(saved)), DeconvNet)

    def test_weights_leave_the_optimizer_out(self, saved):
        import h5py

        with h5py.File(saved / "model.weights.h5") as f:
            assert "optimizer" not in f

    @pytest.mark.parametrize("kind", ["fcn8s", "ensemble"])
    def test_fcn8s_and_ensemble(self, kind, tmp_path):
        fcn = FCN8s(**{**TINY, "fc_kernel_size": 7})
        model = fcn if kind == "fcn8s" else EnsembleSegmenter(
            [DeconvNet(**TINY), fcn], mode="product")
        model = _trained(model) if kind == "fcn8s" else model
        path = model.save_to_preset(tmp_path / kind)
        loaded = type(model).from_preset(path)
        assert type(loaded) is type(model)
        x = _images(1)
        np.testing.assert_array_equal(loaded.predict(x, verbose=0),
                                      model.predict(x, verbose=0))

    def test_resaving_keeps_class_names(self, saved, tmp_path):
        path = DeconvNet.from_preset(saved).save_to_preset(tmp_path / "again")
        meta = json.loads((path / "metadata.json").read_text())
        assert meta["classes"]["names"] == list(SYNTHETIC_INFO.class_names)

    def test_dataset_info_and_describe(self, saved):
        info = preset_dataset_info(saved)
        assert info.class_names == SYNTHETIC_INFO.class_names
        np.testing.assert_array_equal(info.palette[:6], SYNTHETIC_INFO.palette[:6])
        d = describe_preset(saved)
        assert d["class_name"] == "DeconvNet" and set(d["files"]) == FILES


class TestOverrides:
    def test_new_class_count_keeps_the_other_weights(self, saved, trained):
        with pytest.warns(UserWarning, match=r"\['score'\]"):
            model = DeconvNet.from_preset(saved, num_classes=4)
        assert model.output_shape == (None, 64, 64, 4)
        for name in ("block1_conv1", "fc6", "deconv1_2_bn"):
            for a, b in zip(model.get_layer(name).get_weights(),
                            trained.get_layer(name).get_weights()):
                np.testing.assert_array_equal(a, b)

    def test_unchanged_overrides_load_directly(self, saved):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model = DeconvNet.from_preset(saved, num_classes=6, image_shape=(64, 64, 3))
        assert model.output_shape == (None, 64, 64, 6)

    def test_unknown_override(self, saved):
        with pytest.raises(ValueError, match="no argument.*'depth'"):
            DeconvNet.from_preset(saved, depth=3)

    def test_builtin_names_with_weights(self, tmp_path):
        source = DeconvNet.from_preset("deconvnet_edge_small", num_classes=3)
        weights = tmp_path / "edge.weights.h5"
        source.save_weights(weights)
        model = DeconvNet.from_preset("deconvnet_edge_small", num_classes=3,
                                      weights=weights)
        np.testing.assert_array_equal(model.get_layer("fc6").get_weights()[0],
                                      source.get_layer("fc6").get_weights()[0])
        with pytest.raises(PresetError, match="does not fit"):
            DeconvNet.from_preset("deconvnet_edge_small", weights=weights)

    def test_builtin_names_with_vgg16_weights(self, monkeypatch):
        from keras_deconvnet.models import vgg16_weights

        calls = []
        monkeypatch.setattr(vgg16_weights, "load_vgg16_weights",
                            lambda model, weights: calls.append((model.name, weights)))
        DeconvNet.from_preset("deconvnet_edge_small", weights="imagenet")
        assert calls == [("deconvnet", "imagenet")]

    def test_builtin_with_a_handle(self, saved, monkeypatch):
        entry = {"metadata": {"description": "trained", "params": 0}, "config": TINY,
                 "handle": f"file://{saved}"}
        monkeypatch.setitem(preset_io.BUILTIN_PRESETS, "tiny_trained", (DeconvNet, entry))
        assert "tiny_trained" in DeconvNet.presets()
        model = DeconvNet.from_preset("tiny_trained")
        meta = json.loads((saved / "metadata.json").read_text())
        assert model.count_params() == meta["parameter_count"]
        with pytest.raises(PresetError, match="not a FCN8s"):
            FCN8s.from_preset("tiny_trained")


class TestRejects:
    @pytest.mark.parametrize("name", sorted(FILES))
    def test_missing_file(self, copy_of, name):
        (copy_of / name).unlink()
        with pytest.raises(FileNotFoundError, match=f"`{name}` is missing"):
            DeconvNet.from_preset(copy_of)

    @pytest.mark.parametrize("name", ["config.json", "metadata.json", "preprocessor.json"])
    def test_corrupt_json(self, copy_of, name):
        (copy_of / name).write_text('{"class_name": "DeconvNet", ')
        with pytest.raises(PresetError, match=f"`{name}` .*not valid JSON"):
            DeconvNet.from_preset(copy_of)

    def test_weights_of_other_widths(self, copy_of, tmp_path):
        wider = DeconvNet(**{**TINY, "block_filters": (4, 4, 8, 8, 16)})
        wider.save_weights(tmp_path / "w.weights.h5")
        shutil.copy(tmp_path / "w.weights.h5", copy_of / "model.weights.h5")
        with pytest.raises(PresetError, match=r"block5_conv1/kernel needs \(3, 3, 8, 8\)"):
            DeconvNet.from_preset(copy_of)

    def test_weights_of_another_structure(self, copy_of, tmp_path):
        # Keras alone would load this file, leaving the missing layers random.
        other = DeconvNet(**{**TINY, "use_batch_norm": False})
        other.save_weights(tmp_path / "w.weights.h5")
        shutil.copy(tmp_path / "w.weights.h5", copy_of / "model.weights.h5")
        with pytest.raises(PresetError, match="weight arrays"):
            DeconvNet.from_preset(copy_of)

    def test_class_count_differs_from_metadata(self, copy_of):
        _edit_json(copy_of / "metadata.json", lambda m: (
            m["classes"]["names"].pop(), m["classes"]["palette"].pop()))
        with pytest.raises(PresetError, match="6 classes, `metadata.json` names 5"):
            DeconvNet.from_preset(copy_of)

    def test_config_changed_behind_metadata(self, copy_of):
        _edit_json(copy_of / "config.json", lambda c: c["config"].update(fc_units=32))
        with pytest.raises(PresetError, match="parameters, `metadata.json` records"):
            DeconvNet.from_preset(copy_of)

    def test_unregistered_class(self, copy_of):
        _edit_json(copy_of / "config.json", lambda c: c.update(
            registered_name="evil_pkg>Backdoor", class_name="Backdoor",
            module="keras_deconvnet.models.backdoor"))
        with pytest.raises(PresetError, match="evil_pkg>Backdoor"):
            load_preset(copy_of)

    def test_foreign_module(self, copy_of):
        _edit_json(copy_of / "config.json", lambda c: c["config"].update(
            activation={"module": "os", "class_name": "system", "config": "rm -rf /",
                        "registered_name": None}))
        with pytest.raises(PresetError, match="module 'os'"):
            DeconvNet.from_preset(copy_of)

    def test_lambda(self, copy_of):
        lam = {"module": "keras.layers", "class_name": "Lambda", "registered_name": None,
               "config": {"function": {"class_name": "__lambda__", "config": {}}}}
        _edit_json(copy_of / "config.json", lambda c: c["config"].update(activation=lam))
        with pytest.raises(PresetError, match="Lambda"):
            DeconvNet.from_preset(copy_of)

    def test_saving_a_lambda_member_writes_nothing(self, tmp_path):
        inputs = keras.Input((64, 64, 3))
        outputs = keras.layers.Lambda(lambda t: t * 2.0)(
            keras.layers.Conv2D(6, 1)(inputs))
        member = keras.Model(inputs, outputs)
        ensemble = EnsembleSegmenter([DeconvNet(**TINY), member])
        with pytest.raises(PresetError, match="Lambda"):
            ensemble.save_to_preset(tmp_path / "e")
        assert list(tmp_path.iterdir()) == []

    def test_other_class(self, tmp_path):
        path = FCN8s(**TINY).save_to_preset(tmp_path / "fcn")
        with pytest.raises(PresetError, match="holds a FCN8s, not a DeconvNet"):
            DeconvNet.from_preset(path)
        assert isinstance(load_preset(path), FCN8s)

    def test_preprocessing_mismatch(self, copy_of):
        _edit_json(copy_of / "preprocessor.json",
                   lambda p: p["config"].update(mean=[0.5, 0.5, 0.5]))
        with pytest.raises(PresetError, match="preprocessing.*'mean'"):
            DeconvNet.from_preset(copy_of)

    def test_not_a_preset(self, tmp_path, saved):
        with pytest.raises(ValueError, match="Unknown DeconvNet preset.*Known presets"):
            DeconvNet.from_preset("deconvnet_resnet")
        with pytest.raises(FileNotFoundError, match="does not exist"):
            DeconvNet.from_preset(tmp_path / "nothing_here")
        (tmp_path / "model.keras").write_bytes(b"")
        with pytest.raises(PresetError, match="is a file"):
            DeconvNet.from_preset(tmp_path / "model.keras")
        with pytest.raises(ValueError, match="built-in presets only"):
            DeconvNet.from_preset(saved, weights="x.weights.h5")


class TestHubHandles:
    def test_clear_error_without_keras_hub(self, monkeypatch):
        monkeypatch.setitem(sys.modules, "keras_hub", None)  # import fails
        with pytest.raises(ImportError, match="needs keras-hub.*pip install"):
            DeconvNet.from_preset("kaggle://someone/deconvnet/keras/voc")
        with pytest.raises(ValueError, match="needs keras-hub"):
            load_preset("hf://someone/deconvnet")

    def test_delegates_to_keras_hub_get_file(self, saved, monkeypatch):
        requested = []

        def get_file(preset, path):
            requested.append((preset, path))
            return str(saved / path)

        modules = ["keras_hub", "keras_hub.src", "keras_hub.src.utils",
                   "keras_hub.src.utils.preset_utils"]
        for name in modules:
            monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
        sys.modules["keras_hub.src.utils.preset_utils"].get_file = get_file
        model = DeconvNet.from_preset("hf://someone/deconvnet")
        assert isinstance(model, DeconvNet)
        assert {p for _, p in requested} == FILES
        assert {h for h, _ in requested} == {"hf://someone/deconvnet"}


class TestWriting:
    def test_refuses_a_non_empty_directory(self, tmp_path):
        model = DeconvNet(**TINY)
        target = tmp_path / "p"
        target.mkdir()
        model.save_to_preset(target)  # an empty directory is fine
        with pytest.raises(FileExistsError, match="overwrite=True"):
            model.save_to_preset(target)
        other = DeconvNet(**{**TINY, "num_classes": 3})
        other.save_to_preset(target, overwrite=True)
        assert DeconvNet.from_preset(target).output_shape[-1] == 3
        assert [p.name for p in tmp_path.iterdir()] == ["p"]  # no temporary leftovers

    def test_a_failed_write_leaves_nothing(self, tmp_path, monkeypatch):
        def fail(model, path):
            path.write_bytes(b"half")
            raise OSError("disk full")

        monkeypatch.setattr(preset_io, "_save_model_weights", fail)
        with pytest.raises(OSError, match="disk full"):
            DeconvNet(**TINY).save_to_preset(tmp_path / "p")
        assert list(tmp_path.iterdir()) == []

    def test_a_failed_overwrite_keeps_the_old_preset(self, saved, copy_of, monkeypatch):
        monkeypatch.setattr(preset_io, "_save_model_weights",
                            lambda m, p: (_ for _ in ()).throw(OSError("disk full")))
        with pytest.raises(OSError):
            DeconvNet(**TINY).save_to_preset(copy_of, overwrite=True)
        assert (copy_of / "model.weights.h5").read_bytes() == \
            (saved / "model.weights.h5").read_bytes()

    @pytest.mark.parametrize(
        "kwargs, message",
        [
            ({"class_names": ["background", "a"]}, "6 classes"),
            ({"metrics": {"iou": object()}}, "`metrics` must be JSON"),
            ({"dataset_info": SYNTHETIC_INFO, "class_names": ["a"] * 6}, "either"),
            ({"palette": np.zeros((2, 3))}, "palette"),
        ],
    )
    def test_bad_arguments(self, tmp_path, kwargs, message):
        with pytest.raises(ValueError, match=message):
            DeconvNet(**TINY).save_to_preset(tmp_path / "p", **kwargs)
        assert list(tmp_path.iterdir()) == []

    def test_remote_targets_are_refused(self, tmp_path):
        with pytest.raises(ValueError, match="upload_preset"):
            DeconvNet(**TINY).save_to_preset("kaggle://me/deconvnet/keras/tiny")


class TestCommandLine:
    def test_list(self, capsys):
        assert main(["presets"]) == 0
        out = capsys.readouterr().out
        assert "deconvnet_edge_small" in out and "deconvnet_vgg16_voc" in out

    def test_describe_and_check(self, saved, capsys):
        assert main(["presets", str(saved), "--check"]) == 0
        out = capsys.readouterr().out
        assert "tiny test preset" in out and "circle" in out and "check        ok" in out
        assert main(["presets", str(saved), "--json"]) == 0
        described = json.loads(capsys.readouterr().out)
        assert described["metadata"]["classes"]["names"][1] == "circle"
        assert main(["presets", "deconvnet_edge", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["builtin"] is True

    def test_broken_preset_is_one_line(self, copy_of, capsys):
        (copy_of / "metadata.json").unlink()
        assert main(["presets", str(copy_of), "--check"]) == 1
        assert "`metadata.json` is missing" in capsys.readouterr().err

    def test_hub_handle_without_keras_hub(self, monkeypatch, capsys):
        monkeypatch.setitem(sys.modules, "keras_hub", None)
        assert main(["presets", "kaggle://a/b/keras/c"]) == 1
        assert "needs keras-hub" in capsys.readouterr().err
