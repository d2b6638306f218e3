"""The TFDS builder for VOC 2012 segmentation, prepared from a tiny manual dir."""

import importlib.util
import pathlib

import numpy as np
import pytest

pytest.importorskip("tensorflow_datasets")

from keras_deconvnet.data import voc_dataset  # noqa: E402
from keras_deconvnet.data.voc_tfds import VocSegmentation, voc_tfds_dataset  # noqa: E402

# The tiny VOCdevkit writer of voc_test.py (tests have no packages: load it by path).
_spec = importlib.util.spec_from_file_location(
    "voc_test_helpers", pathlib.Path(__file__).with_name("voc_test.py"))
voc_test = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(voc_test)


def test_builder_matches_plain_reader(tmp_path):
    voc_test.make_voc(tmp_path / "manual")
    ds = voc_tfds_dataset("train", manual_dir=str(tmp_path / "manual"),
                          data_dir=str(tmp_path / "tfds"))
    plain = list(voc_dataset(tmp_path / "manual", "train").as_numpy_iterator())
    converted = sorted(ds.as_numpy_iterator(), key=lambda e: e["image_id"])
    assert len(converted) == len(plain) == 2
    for a, b in zip(converted, plain):
        assert a["image_id"] == b["image_id"]
        for key in ("image", "class_mask", "instance_mask", "boxes", "box_classes",
                    "box_instances"):
            assert a[key].dtype == b[key].dtype, key
            np.testing.assert_array_equal(a[key], b[key])
    with pytest.raises(ValueError, match="train_aug"):
        voc_tfds_dataset("train_aug", manual_dir=str(tmp_path / "manual"),
                         data_dir=str(tmp_path / "tfds"))
    assert "VOCdevkit" in VocSegmentation.MANUAL_DOWNLOAD_INSTRUCTIONS
