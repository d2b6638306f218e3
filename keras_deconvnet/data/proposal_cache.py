"""The authors' proposal cache: one MATLAB `.mat` file of `boxes_padded` per image.

`inference/generate_EDeconvNet_CRF_results.m` (HyeonwooNoh/DeconvNet) loads
`<edgebox_cache_dir>/<image_id>.mat` and reads its `boxes_padded`: one row
`[x1 y1 x2 y2]` per box, best first, in MATLAB's 1-based, inclusive pixel indices of
the *padded* image, `padarray(I, [W, H])` for an `H x W` image (rows padded by the
image's width, columns by its height: a `(H + 2W) x (W + 2H)` canvas). The boxes are
already extended with their context: the script crops them as they are. The cache
files themselves are not in the release (`inference/data/README.md` only names
them), nor is the code that extended the boxes.

`PaddedBoxProposals` reads such files and returns the boxes in this package's
convention (`[ymin, xmin, ymax, xmax]`, 0-based pixel edges of the image itself,
possibly past its border), with `boxes_extended = True`, which tells
`predict_proposals` to apply no context of its own and not to clip them.
"""

from __future__ import annotations

import os

import numpy as np

CACHE_KEY = "boxes_padded"


class PaddedBoxProposals:
    """Proposals from the authors' `.mat` cache (`boxes_padded`), per image id.

    Args:
        directory: folder of `<image_id>.mat` files (MATLAB v5-v7.2, as `save`
            writes them by default; read with `scipy.io.loadmat`).
        key: the variable to read. Defaults to `"boxes_padded"`.

    Raises:
        FileNotFoundError: for a missing directory (on construction) or file (on
            call), naming it.
        ValueError: for a file without `key`, a malformed array, or a box outside
            the padded image (one line naming the file, the box and the range).

    Example:

    >>> import tempfile, numpy as np, scipy.io
    >>> folder = tempfile.mkdtemp()
    >>> # A 10x20 image is padded by 20 rows and 10 columns on each side.
    >>> scipy.io.savemat(f"{folder}/img1.mat", {"boxes_padded": [[11, 21, 30, 30]]})
    >>> PaddedBoxProposals(folder)(np.zeros((10, 20, 3), np.uint8), image_id="img1")
    array([[ 0.,  0., 10., 20.]], dtype=float32)
    """

    boxes_extended = True  # the cache's boxes carry their context already

    def __init__(self, directory: str, key: str = CACHE_KEY):
        directory = os.fspath(directory)
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"Proposal directory not found: {directory}")
        self.directory = directory
        self.key = key

    def path(self, image_id: str) -> str:
        """The file read for `image_id`; FileNotFoundError when there is none."""
        if isinstance(image_id, bytes):
            image_id = image_id.decode()
        path = os.path.join(self.directory, f"{image_id}.mat")
        if not os.path.exists(path):
            raise FileNotFoundError(f"No proposal cache for image_id={image_id!r}: {path}")
        return path

    def load(self, image_id: str) -> np.ndarray:
        """The raw `(N, 4)` `[x1 y1 x2 y2]` rows of `image_id`'s file (1-based, padded)."""
        import scipy.io

        path = self.path(image_id)
        try:
            contents = scipy.io.loadmat(path)
        except (ValueError, OSError, NotImplementedError, TypeError) as error:
            raise ValueError(f"Cannot read proposals from {path}: {error}") from None
        if self.key not in contents:
            found = sorted(k for k in contents if not k.startswith("__"))
            raise ValueError(f"{path} has no `{self.key}` (variables: {found})")
        boxes = np.asarray(contents[self.key])
        if boxes.size == 0:
            return np.zeros((0, 4), np.float64)
        if boxes.ndim != 2 or boxes.shape[1] < 4 or not np.issubdtype(boxes.dtype, np.number):
            raise ValueError(f"`{self.key}` in {path} must be numeric (N, 4) [x1 y1 x2 y2]. "
                             f"Received: shape={boxes.shape}, dtype={boxes.dtype}")
        boxes = boxes[:, :4].astype(np.float64)
        if not np.all(np.isfinite(boxes)):
            raise ValueError(f"`{self.key}` in {path} contains NaN or infinite values.")
        return boxes

    def __call__(self, image=None, image_id: str | None = None) -> np.ndarray:
        if image_id is None or image is None:
            raise ValueError("`PaddedBoxProposals` needs the image and its `image_id` (the "
                             "padding depends on the image size).")
        height, width = np.shape(image)[:2]
        path = self.path(image_id)
        boxes = self.load(image_id)
        # padarray(I, [W, H]): rows padded by the width, columns by the height.
        rows, cols = height + 2 * width, width + 2 * height
        x1, y1, x2, y2 = boxes.T
        bad = (x1 < 1) | (y1 < 1) | (x2 > cols) | (y2 > rows) | (x2 < x1) | (y2 < y1)
        if bad.any():
            index = int(np.argmax(bad))
            raise ValueError(
                f"Box {index} of {path}, [x1 y1 x2 y2] = {boxes[index].tolist()}, is outside "
                f"the padded {rows}x{cols} canvas of this {height}x{width} image "
                f"(`{self.key}` is 1-based in the image padded by its width above and "
                "below and by its height left and right)"
            )
        converted = np.stack([y1 - 1 - width, x1 - 1 - height, y2 - width, x2 - height], 1)
        return converted.astype(np.float32)

    def get_config(self) -> dict:
        return {"directory": self.directory, "key": self.key}
