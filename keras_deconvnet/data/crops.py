"""Stage 1 and stage 2 training crops (DeconvNet's two-stage training), as tf.data.

Both take a dataset in the common format (see `keras_deconvnet.data`) and return a
dataset of `(image, mask)` pairs ready for `model.fit` after `.batch()`:
`image` float32 `(crop_size, crop_size, 3)` RGB in [0, 255] (the segmenter's
preprocessor subtracts the mean inside `fit`) and `mask` int32
`(crop_size, crop_size)`, 255 = ignore.

Geometry, shared by both stages. A window `[ymin, xmin, ymax, xmax]` (float, pixel
edges) is resized to `resize_size` x `resize_size`, then a `crop_size` square is cut
from it (random offset and random horizontal flip when `training`, the centre and no
flip otherwise). Both steps are done as one resampling: output pixel `j` samples
the point `ymin + (offset + j + 0.5) * (ymax - ymin) / resize_size` (likewise in x),
bilinearly for the image and nearest (the pixel containing the point) for labels.
Windows past the image border are **padded**: the image reads zeros there and the
label 255 (ignore), so objects at the border stay centred (the original code does
this for stage 2; here both stages do, unless `clip_to_image=True`).

Labels. Stage 1: one crop per object, its box enlarged by `context` about its
centre; only pixels of that object's instance keep its class, every other pixel is
background 0, pixels ignored in the class mask stay 255. Stage 2: crops around
object proposals that overlap some ground-truth box with IoU >= `iou_threshold`
(a `Stage2CropConfig` field); the class mask is kept as it is (all classes
labelled).
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from keras_deconvnet.data.proposals import box_iou, call_proposals
from keras_deconvnet.labels import IGNORE_LABEL


def _check_sizes(crop_size, resize_size, context):
    for name, value in (("crop_size", crop_size), ("resize_size", resize_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be an int >= 1. Received: {name}={value!r}")
    if resize_size < crop_size:
        raise ValueError(
            "`resize_size` must be at least `crop_size`. "
            f"Received: resize_size={resize_size}, crop_size={crop_size}"
        )
    if not context > 0:
        raise ValueError(f"`context` must be > 0. Received: context={context!r}")


def _check_dataset(dataset):
    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(
            f"`dataset` must be a tf.data.Dataset. Received: dataset={type(dataset).__name__}"
        )
    spec = dataset.element_spec
    needed = ("image", "class_mask", "instance_mask", "boxes", "box_classes", "box_instances")
    missing = [k for k in needed if not isinstance(spec, dict) or k not in spec]
    if missing:
        raise ValueError(
            "`dataset` must yield dicts in the common format of `keras_deconvnet.data`. "
            f"Missing keys: {missing}"
        )


def enlarge_boxes(boxes, context: float, image_shape=None) -> tf.Tensor:
    """Boxes scaled by `context` about their centres, clipped if `image_shape` is given."""
    boxes = tf.cast(boxes, tf.float32)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) * (context / 2)
    out = tf.concat([centre - half, centre + half], axis=1)
    if image_shape is not None:
        size = tf.cast(tf.stack([image_shape[0], image_shape[1]] * 2), tf.float32)
        out = tf.clip_by_value(out, 0.0, size)
    return out


def sample_windows(image, label_maps, windows, crop_size, resize_size, offsets, flips):
    """Resamples windows of an image and its label maps; the geometry in the module doc.

    The one crop geometry of the package: stage 1 and stage 2 training crops and
    proposal inference (`keras_deconvnet.inference.predict_proposals`, with
    `resize_size == crop_size`, zero offsets and no flips) all sample windows here.

    Args:
        image: `(H, W, 3)` image, any dtype.
        label_maps: `(H, W, C)` int32 label maps, sampled nearest; or `None` (then
            `labels` is `None` too).
        windows: `(N, 4)` float32 windows `[ymin, xmin, ymax, xmax]`.
        crop_size: output side `S`.
        resize_size: side `R` the window is resized to before cropping.
        offsets: `(N, 2)` int32 crop offsets in `[0, R - S]`.
        flips: `(N,)` bool, flip horizontally.

    Returns:
        `(images, labels, valid)`: float32 `(N, S, S, 3)` (zeros outside the image),
        int32 `(N, S, S, C)` (clamped at the border; mask them with `valid`) and
        bool `(N, S, S)`, true inside the image.
    """
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    windows = tf.cast(windows, tf.float32)
    steps = tf.range(crop_size, dtype=tf.float32) + 0.5
    offsets = tf.cast(offsets, tf.float32)
    scale = (windows[:, 2:] - windows[:, :2]) / float(resize_size)
    ys = windows[:, 0:1] + (offsets[:, 0:1] + steps) * scale[:, 0:1]
    xs = windows[:, 1:2] + (offsets[:, 1:2] + steps) * scale[:, 1:2]
    xs = tf.where(flips[:, tf.newaxis], xs[:, ::-1], xs)

    # Image: bilinear. Sample points at pixel-centre coordinates of an image padded
    # by one replicated pixel, so points within the outer half pixel stay exact.
    padded = tf.pad(tf.cast(image, tf.float32), [[1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    norm_y = tf.cast(tf.maximum(height + 1, 1), tf.float32)
    norm_x = tf.cast(tf.maximum(width + 1, 1), tf.float32)
    boxes = tf.stack(
        [(ys[:, 0] + 0.5) / norm_y, (xs[:, 0] + 0.5) / norm_x,
         (ys[:, -1] + 0.5) / norm_y, (xs[:, -1] + 0.5) / norm_x], axis=1
    )
    count = tf.shape(windows)[0]
    images = tf.image.crop_and_resize(
        padded[tf.newaxis], boxes, tf.zeros([count], tf.int32), [crop_size, crop_size]
    )

    # Labels: nearest, i.e. the pixel that contains the sample point.
    iy = tf.cast(tf.floor(ys), tf.int32)
    ix = tf.cast(tf.floor(xs), tf.int32)
    valid_y = (iy >= 0) & (iy < height)
    valid_x = (ix >= 0) & (ix < width)
    labels = None
    if label_maps is not None:
        rows = tf.gather(label_maps, tf.clip_by_value(iy, 0, height - 1), axis=0)  # N,S,W,C
        labels = tf.gather(rows, tf.clip_by_value(ix, 0, width - 1), axis=2, batch_dims=1)
    valid = valid_y[:, :, tf.newaxis] & valid_x[:, tf.newaxis, :]
    images = tf.where(valid[..., tf.newaxis], images, 0.0)
    return images, labels, valid


def _offsets_and_flips(count, crop_size, resize_size, training, seed):
    span = resize_size - crop_size
    if not training:
        return tf.fill([count, 2], span // 2), tf.zeros([count], tf.bool)
    offsets = tf.random.stateless_uniform(
        [count, 2], seed, minval=0, maxval=span + 1, dtype=tf.int32
    )
    flips = tf.random.stateless_uniform([count], seed + 1, dtype=tf.float32) < 0.5
    return offsets, flips


def _with_seeds(dataset, training, seed):
    """Zips in a per-example stateless seed; new randomness each epoch."""
    if training:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    else:
        seeds = tf.data.Dataset.from_tensors(tf.constant(0, tf.int64)).repeat()
    return tf.data.Dataset.zip(dataset, seeds.map(lambda s: tf.stack([s, s // 3 + 17])))


def _crop_pipeline(dataset, crops, training, seed):
    """Per-example `crops` (a batch of crops each), flattened."""
    return (
        _with_seeds(dataset, training, seed)
        .map(crops, num_parallel_calls=tf.data.AUTOTUNE)
        .unbatch()
    )


def stage1_crops(
    dataset: tf.data.Dataset,
    crop_size: int = 224,
    resize_size: int = 250,
    context: float = 1.2,
    training: bool = True,
    seed: int | None = None,
    clip_to_image: bool = False,
) -> tf.data.Dataset:
    """One object-centred crop per annotated object (DeconvNet's first stage).

    Each object's box is enlarged by `context` about its centre, resampled to
    `resize_size` and cropped to `crop_size` (random crop and flip when `training`);
    only that object's pixels keep their class, all other pixels are background 0,
    ignored pixels stay 255. Windows past the image pad it (image 0, label 255) unless
    `clip_to_image`, which clips the window to the image instead.

    Args:
        dataset: `tf.data.Dataset` in the common format.
        crop_size: side of the output crops. Defaults to `224`.
        resize_size: side the window is resized to before cropping. Defaults to `250`.
        context: box enlargement factor. Defaults to `1.2`.
        training: random crop offset and flip if True; centre crop otherwise.
        seed: int or None, for reproducible augmentation (still new each epoch).
        clip_to_image: clip windows to the image instead of padding.

    Returns:
        A `tf.data.Dataset` of `(image, mask)`: float32 RGB `(S, S, 3)` in
        [0, 255], int32 `(S, S)`.

    Example:

    >>> from keras_deconvnet.data import synthetic_dataset
    >>> ds = stage1_crops(synthetic_dataset(num_examples=1, image_size=(64, 64)),
    ...                   crop_size=32, resize_size=36)
    >>> [tuple(t.shape) for t in next(iter(ds))]
    [(32, 32, 3), (32, 32)]
    """
    _check_dataset(dataset)
    _check_sizes(crop_size, resize_size, context)

    def crops(example, example_seed):
        image = example["image"]
        boxes = tf.cast(example["boxes"], tf.float32)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes = tf.boolean_mask(boxes, keep)
        classes = tf.cast(tf.boolean_mask(example["box_classes"], keep), tf.int32)
        instances = tf.cast(tf.boolean_mask(example["box_instances"], keep), tf.int32)
        windows = enlarge_boxes(boxes, context, tf.shape(image) if clip_to_image else None)
        count = tf.shape(windows)[0]
        offsets, flips = _offsets_and_flips(count, crop_size, resize_size, training,
                                            example_seed)
        label_maps = tf.stack(
            [tf.cast(example["class_mask"], tf.int32),
             tf.cast(example["instance_mask"], tf.int32)], axis=-1
        )
        images, labels, valid = sample_windows(
            image, label_maps, windows, crop_size, resize_size, offsets, flips
        )
        class_crop, instance_crop = labels[..., 0], labels[..., 1]
        ignored = class_crop == IGNORE_LABEL
        own = instance_crop == instances[:, tf.newaxis, tf.newaxis]
        mask = tf.where(own, classes[:, tf.newaxis, tf.newaxis], 0)
        mask = tf.where(ignored | ~valid, IGNORE_LABEL, mask)
        return images, mask

    return _crop_pipeline(dataset, crops, training, seed)


@dataclasses.dataclass
class Stage2CropConfig:
    """Which proposals become stage-2 crops, and how they are cut.

    Args:
        iou_threshold: least IoU of a proposal with a ground-truth box. Defaults
            to `0.5`.
        max_per_image: most crops per image. Defaults to `8`.
        crop_size: side of the output crops. Defaults to `224`.
        resize_size: side the window is resized to before cropping. Defaults to
            `250`.
        context: window enlargement factor about the proposal's centre. Defaults
            to `1.2`, as stage 1; `1.0` crops the proposal itself.
        training: random subset, crop offset and flip if True; the first
            proposals and centre crops otherwise. Defaults to `True`.
        seed: int or None, for reproducible augmentation (still new each epoch).

    Raises:
        ValueError: on a bad value, naming the field.

    Example:

    >>> Stage2CropConfig(crop_size=32, resize_size=36).max_per_image
    8
    """

    iou_threshold: float = 0.5
    max_per_image: int = 8
    crop_size: int = 224
    resize_size: int = 250
    context: float = 1.2
    training: bool = True
    seed: int | None = None

    def __post_init__(self):
        _check_sizes(self.crop_size, self.resize_size, self.context)
        if not 0.0 <= float(self.iou_threshold) <= 1.0:
            raise ValueError(
                "`iou_threshold` must be in [0, 1]. "
                f"Received: iou_threshold={self.iou_threshold!r}"
            )
        if isinstance(self.max_per_image, bool) or not isinstance(self.max_per_image, int) or (
            self.max_per_image < 1
        ):
            raise ValueError(
                "`max_per_image` must be an int >= 1. "
                f"Received: max_per_image={self.max_per_image!r}"
            )


def stage2_crops(
    dataset: tf.data.Dataset,
    proposals=None,
    config: Stage2CropConfig | None = None,
) -> tf.data.Dataset:
    """Crops around object proposals that overlap the ground truth (second stage).

    For every image, proposals come from `proposals` (a generator following the
    interface in `keras_deconvnet.data.proposals`, called with the image and its
    `image_id`) or, when `proposals` is None, from the examples' own `"proposals"`
    key. Proposals whose IoU with some ground-truth box is at least
    `config.iou_threshold` are kept, at most `config.max_per_image` of them (the
    best ones in proposal order, or a random subset when `config.training`). Each
    is enlarged by `config.context`, resampled and cropped like stage 1, padding
    past the image border (image 0, label 255). All classes in a crop are labelled.

    Args:
        dataset: `tf.data.Dataset` in the common format.
        proposals: proposal generator, or None to read `example["proposals"]`.
        config: a `Stage2CropConfig`; None for its defaults (the paper's 224 crops
            of 250 windows, IoU >= 0.5).

    Returns:
        A `tf.data.Dataset` of `(image, mask)`: float32 RGB `(S, S, 3)` in
        [0, 255], int32 `(S, S)`.

    Example:

    >>> from keras_deconvnet.data import synthetic_dataset, SlidingWindowProposals
    >>> ds = stage2_crops(synthetic_dataset(num_examples=1, image_size=(64, 64)),
    ...                   SlidingWindowProposals(),
    ...                   Stage2CropConfig(iou_threshold=0.3, crop_size=32, resize_size=36))
    >>> [tuple(t.shape) for t in next(iter(ds))]
    [(32, 32, 3), (32, 32)]
    """
    _check_dataset(dataset)
    config = config or Stage2CropConfig()
    if not isinstance(config, Stage2CropConfig):
        raise ValueError(
            f"`config` must be a Stage2CropConfig or None. Received: config={config!r}"
        )
    _check_proposals(proposals, dataset)

    def crops(example, example_seed):
        boxes = _matching_proposals(example, proposals, config, example_seed)
        windows = enlarge_boxes(boxes, config.context)
        count = tf.shape(windows)[0]
        offsets, flips = _offsets_and_flips(count, config.crop_size, config.resize_size,
                                            config.training, example_seed)
        label_maps = tf.cast(example["class_mask"], tf.int32)[..., tf.newaxis]
        images, labels, valid = sample_windows(
            example["image"], label_maps, windows, config.crop_size, config.resize_size,
            offsets, flips
        )
        mask = tf.where(valid, labels[..., 0], IGNORE_LABEL)
        return images, mask

    return _crop_pipeline(dataset, crops, config.training, config.seed)


def _check_proposals(proposals, dataset) -> None:
    if proposals is None and "proposals" not in dataset.element_spec:
        raise ValueError(
            "`proposals` must be a proposal generator when the dataset has no "
            "'proposals' key. Received: proposals=None"
        )
    if proposals is not None and not callable(proposals):
        raise ValueError(
            "`proposals` must be callable as `proposals(image, image_id=None)`. "
            f"Received: proposals={proposals!r}"
        )


def _matching_proposals(example, proposals, config: Stage2CropConfig, seed) -> tf.Tensor:
    """The example's proposals with IoU >= the threshold with some object: the first
    `max_per_image` (a random subset when training)."""
    if proposals is None:
        boxes = tf.reshape(tf.cast(example["proposals"], tf.float32), (-1, 4))
    else:

        def generate(image, image_id):
            image_id = image_id.decode() if isinstance(image_id, bytes) else image_id
            return call_proposals(proposals, image, image_id or None, clip=False)

        image_id = example.get("image_id", tf.constant(""))
        boxes = tf.numpy_function(generate, [example["image"], image_id], tf.float32)
        boxes = tf.reshape(boxes, (-1, 4))
    gt_boxes = tf.reshape(tf.cast(example["boxes"], tf.float32), (-1, 4))
    iou = box_iou(boxes, gt_boxes)
    best = tf.reduce_max(tf.concat([iou, -tf.ones_like(iou[:, :1])], axis=1), axis=1)
    boxes = tf.boolean_mask(boxes, best >= config.iou_threshold)
    if config.training:
        order = tf.argsort(tf.random.stateless_uniform(tf.shape(boxes)[:1], seed + 2))
        boxes = tf.gather(boxes, order)
    return boxes[: config.max_per_image]
