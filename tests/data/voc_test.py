"""The VOC 2012 reader on a tiny VOCdevkit written by the test (real PNG/JPEG/XML)."""

import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_deconvnet.data import VOC_CLASSES, VOC_INFO, VOC_PALETTE, load_voc_example, voc_dataset
from keras_deconvnet.data.voc import parse_voc_annotation

H, W = 40, 50


def save_palette_png(path, array):
    image = Image.fromarray(array.astype(np.uint8), mode="P")
    image.putpalette(VOC_PALETTE.ravel().tolist())
    image.save(path)


def xml_for(objects):
    body = "".join(
        f"<object><name>{name}</name><difficult>0</difficult><bndbox>"
        f"<xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax>"
        "</bndbox></object>"
        for name, (x0, y0, x1, y1) in objects
    )
    return (f"<annotation><size><width>{W}</width><height>{H}</height><depth>3</depth>"
            f"</size>{body}</annotation>")


def masks(seed):
    """A person (15) at rows 5..19, cols 4..23 and a dog (12) at rows 22..35,
    cols 20..44, each with a 1-px border of 255 around it; shifted by `seed`."""
    cls = np.zeros((H, W), np.uint8)
    inst = np.zeros((H, W), np.uint8)
    for instance, (cls_id, (y0, x0, y1, x1)) in enumerate(
        [(15, (5, 4 + seed, 20, 24 + seed)), (12, (22, 20, 36, 45))], 1
    ):
        cls[y0 - 1:y1 + 1, x0 - 1:x1 + 1] = 255
        inst[y0 - 1:y1 + 1, x0 - 1:x1 + 1] = 255
        cls[y0:y1, x0:x1] = cls_id
        inst[y0:y1, x0:x1] = instance
    return cls, inst


def make_voc(root, train=("2007_000001", "2007_000002"), val=("2007_000003",)):
    voc = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "SegmentationObject", "Annotations",
                "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    for seed, image_id in enumerate(list(train) + list(val)):
        rng = np.random.default_rng(seed)
        image = np.clip(rng.normal(128, 10, (H, W, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(voc / "JPEGImages" / f"{image_id}.jpg", quality=95)
        cls, inst = masks(seed)
        save_palette_png(voc / "SegmentationClass" / f"{image_id}.png", cls)
        save_palette_png(voc / "SegmentationObject" / f"{image_id}.png", inst)
        objects = [("person", (5 + seed, 6, 24 + seed, 20)), ("dog", (21, 23, 60, 36))]
        (voc / "Annotations" / f"{image_id}.xml").write_text(xml_for(objects))
    (voc / "ImageSets/Segmentation/train.txt").write_text("\n".join(train) + "\n")
    (voc / "ImageSets/Segmentation/val.txt").write_text("\n".join(val) + "\n")
    return root / "VOCdevkit"


def test_reads_split_in_common_format(tmp_path):
    root = make_voc(tmp_path)
    examples = list(voc_dataset(root, "train").as_numpy_iterator())
    assert [e["image_id"].decode() for e in examples] == ["2007_000001", "2007_000002"]
    for seed, ex in enumerate(examples):
        cls, inst = masks(seed)
        assert ex["image"].shape == (H, W, 3) and ex["image"].dtype == np.uint8
        np.testing.assert_array_equal(ex["class_mask"], cls)
        np.testing.assert_array_equal(ex["instance_mask"], np.where(inst == 255, 0, inst))
        np.testing.assert_array_equal(ex["box_instances"], [1, 2])
        np.testing.assert_array_equal(ex["box_classes"], [15, 12])
        np.testing.assert_array_equal(ex["boxes"], [[5, 4 + seed, 20, 24 + seed],
                                                    [22, 20, 36, 45]])
    # The VOC2012 folder itself works as root too.
    assert len(list(voc_dataset(root / "VOC2012", "val"))) == 1
    assert VOC_INFO.num_classes == 21 and VOC_CLASSES[15] == "person"


def test_boxes_from_xml_are_converted_and_clipped(tmp_path):
    root = make_voc(tmp_path)
    with pytest.warns(UserWarning, match="clipped"):
        ex = load_voc_example(root, "2007_000001", boxes_from="xml")
    # bndbox is 1-based inclusive: xmin=5 -> 4; the dog's xmax=60 is clipped to 50.
    np.testing.assert_array_equal(ex["boxes"], [[5, 4, 20, 24], [22, 20, 36, 50]])
    np.testing.assert_array_equal(ex["box_classes"], [15, 12])
    np.testing.assert_array_equal(ex["box_instances"], [1, 2])
    ds = voc_dataset(root, "val", boxes_from="xml")
    with pytest.warns(UserWarning, match="clipped"):
        assert next(iter(ds))["boxes"].shape == (2, 4)


def test_missing_files_and_empty_split(tmp_path):
    root = make_voc(tmp_path)
    missing = root / "VOC2012/SegmentationObject/2007_000002.png"
    os.remove(missing)
    with pytest.raises(FileNotFoundError, match="2007_000002.png"):
        voc_dataset(root, "train")
    (root / "VOC2012/ImageSets/Segmentation/empty.txt").write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        voc_dataset(root, "empty")
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        voc_dataset(root, "nope")
    with pytest.raises(FileNotFoundError, match="VOC 2012"):
        voc_dataset(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="boxes_from"):
        voc_dataset(root, boxes_from="json")


def test_corrupt_and_wrong_masks_name_the_file(tmp_path):
    root = make_voc(tmp_path)
    bad = root / "VOC2012/SegmentationClass/2007_000001.png"
    bad.write_bytes(bad.read_bytes()[:60])  # truncated PNG
    with pytest.raises(ValueError, match="2007_000001.png"):
        load_voc_example(root, "2007_000001")
    ds = voc_dataset(root, "train")  # files exist; decoding fails when read
    with pytest.raises(tf.errors.InvalidArgumentError, match="2007_000001.png"):
        list(ds)

    rgb = root / "VOC2012/SegmentationClass/2007_000002.png"
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(rgb)
    with pytest.raises(ValueError, match="palette"):
        load_voc_example(root, "2007_000002")

    small = root / "VOC2012/SegmentationObject/2007_000003.png"
    save_palette_png(small, np.zeros((H - 1, W), np.uint8))
    with pytest.raises(ValueError, match="2007_000003"):
        load_voc_example(root, "2007_000003")


def test_parse_annotation_errors(tmp_path):
    path = tmp_path / "a.xml"
    path.write_text(xml_for([("unicorn", (1, 1, 5, 5))]))
    with pytest.raises(ValueError, match="unicorn"):
        parse_voc_annotation(path)
    path.write_text("<annotation><object>")
    with pytest.raises(ValueError, match="a.xml"):
        parse_voc_annotation(path)


def test_sbd_train_aug(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    root = make_voc(tmp_path)
    sbd = tmp_path / "sbd"
    (sbd / "cls").mkdir(parents=True)
    (sbd / "inst").mkdir()
    (sbd / "img").mkdir()
    cls = np.zeros((H, W), np.uint8)
    inst = np.zeros((H, W), np.uint8)
    cls[2:10, 3:9] = 7
    inst[2:10, 3:9] = 1
    scipy_io.savemat(sbd / "cls" / "2008_000009.mat",
                     {"GTcls": {"Segmentation": cls, "Boundaries": [], "CategoriesPresent": [7]}})
    scipy_io.savemat(sbd / "inst" / "2008_000009.mat",
                     {"GTinst": {"Segmentation": inst, "Boundaries": [], "Categories": [7]}})
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(sbd / "img" / "2008_000009.jpg")
    (sbd / "train.txt").write_text("2008_000009\n2007_000003\n")
    (sbd / "val.txt").write_text("2007_000001\n")
    examples = list(voc_dataset(root, "train", sbd_root=sbd).as_numpy_iterator())
    # VOC val (2007_000003) is left out even though SBD lists it.
    assert [e["image_id"].decode() for e in examples] == [
        "2007_000001", "2007_000002", "2008_000009"]
    sbd_example = examples[-1]
    np.testing.assert_array_equal(sbd_example["class_mask"], cls)
    np.testing.assert_array_equal(sbd_example["boxes"], [[2, 3, 10, 9]])
    np.testing.assert_array_equal(sbd_example["box_classes"], [7])
    # "trainval" keeps SBD too (it used to drop it silently): all of VOC and SBD.
    trainval = [e["image_id"].decode()
                for e in voc_dataset(root, "trainval", sbd_root=sbd).as_numpy_iterator()]
    assert trainval == ["2007_000001", "2007_000002", "2007_000003", "2008_000009"]


def test_feeds_stage1_crops(tmp_path):
    from keras_deconvnet.data import stage1_crops

    crops = list(stage1_crops(voc_dataset(make_voc(tmp_path), "train"), crop_size=24,
                              resize_size=28, seed=0))
    assert len(crops) == 4  # two objects in each of two images
    classes = [set(np.unique(mask.numpy())) - {0, 255} for _, mask in crops]
    assert classes == [{15}, {12}, {15}, {12}]
