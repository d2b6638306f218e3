"""Oxford-IIIT Pet through TFDS, on TFDS's offline mock data and hand-made trimaps."""

import numpy as np
import pytest
import tensorflow as tf

from keras_deconvnet.data.pets import pets_info, pets_to_common

tfds = pytest.importorskip("tensorflow_datasets")


def test_trimap_mapping_box_and_mask_resize():
    trimap = np.full((10, 8, 1), 2, np.uint8)  # background
    trimap[2:6, 1:5] = 3  # border ring
    trimap[3:5, 2:4] = 1  # pet
    example = {
        "image": np.zeros((20, 16, 3), np.uint8),  # twice the mask's size
        "segmentation_mask": trimap,
        "species": np.int64(1),
        "label": np.int64(4),
        "file_name": tf.constant("beagle_12.jpg"),
    }
    out = pets_to_common(example, "species")
    cls = out["class_mask"].numpy()
    assert cls.shape == (20, 16) and out["class_mask"].dtype == tf.uint8
    assert (cls[6:10, 4:8] == 2).all()  # dog = species 1 -> class 2
    assert cls[0, 0] == 0 and cls[4, 2] == 255
    assert set(np.unique(cls)) == {0, 2, 255}
    np.testing.assert_array_equal(out["instance_mask"].numpy(), (cls == 2).astype(np.int32))
    np.testing.assert_array_equal(out["boxes"].numpy(), [[4, 2, 12, 10]])  # pet + border
    np.testing.assert_array_equal(out["box_classes"].numpy(), [2])
    np.testing.assert_array_equal(out["box_instances"].numpy(), [1])
    assert out["image_id"].numpy() == b"beagle_12"
    assert pets_to_common(example, "breed")["box_classes"].numpy()[0] == 5
    assert pets_to_common(example, "binary")["box_classes"].numpy()[0] == 1
    example["segmentation_mask"] = np.full((10, 8, 1), 2, np.uint8)
    assert pets_to_common(example, "species")["boxes"].shape == (0, 4)
    with pytest.raises(ValueError, match="class_mode"):
        pets_to_common(example, "colour")


def test_pets_dataset_on_mock_data():
    from keras_deconvnet.data import pets_dataset, stage1_crops

    with tfds.testing.mock_data(num_examples=3):
        ds = pets_dataset("train", class_mode="breed")
        examples = list(ds.as_numpy_iterator())
    assert len(examples) == 3
    for ex in examples:
        h, w = ex["image"].shape[:2]
        assert ex["class_mask"].shape == (h, w) and ex["instance_mask"].shape == (h, w)
        assert set(np.unique(ex["class_mask"])) <= set(range(38)) | {255}
        assert ex["boxes"].shape[1] == 4 and len(ex["boxes"]) <= 1
    crops = stage1_crops(tf.data.Dataset.from_generator(
        lambda: iter(examples), output_signature=ds.element_spec), crop_size=16,
        resize_size=16)
    for _, mask in crops:
        assert mask.shape == (16, 16)
    assert pets_info("breed").num_classes == 38
    assert pets_info("species").class_names == ("background", "cat", "dog")


def test_data_that_is_not_prepared_is_a_one_line_error(tmp_path):
    from keras_deconvnet.data import pets_dataset

    with pytest.raises(FileNotFoundError, match="not prepared in .*tfds build") as error:
        pets_dataset("test", data_dir=str(tmp_path), download=False)
    assert "\n" not in str(error.value) and str(tmp_path) in str(error.value)


def test_the_command_line_says_so_in_one_line(tmp_path, capsys):
    from keras_deconvnet.cli import main

    code = main(["evaluate", "--dataset", "pets", "--data-dir", str(tmp_path),
                 "--preset", "deconvnet_edge_small", "--num-examples", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "Oxford-IIIT Pet is not prepared" in err[0], err
