"""PyTorch Dataset over a split: image (normalised CHW float), mask (1xHxW float 0/1), id, original size."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from seglib.data.catalog import find_dataset_dir, resolve_listed_path
from seglib.data.check import relation
from seglib.data.mask_rules import MaskRule
from seglib.data.splits import read_split
from seglib.infra.errors import DataError
from seglib.infra.io import load_rgb


def load_pair(image_path: Path, mask_path: Path, rule=None) -> tuple[np.ndarray, np.ndarray]:
    """Decode an image/mask pair at the mask's resolution (the ground truth's): RGB uint8, mask uint8 0/1.

    A mask that is a uniform rescale of its image (the data set's main quirk) gets the image resized to it;
    any other size difference, a non-binary mask or one with transparency, is a DataError naming the file. `rule`:
    a `mask_rules.MaskRule` for masks stored otherwise (instance ids, class values, a colour, the alpha channel).
    """
    from seglib.data.mask_rules import MaskRule

    image = load_rgb(image_path, exif_transpose=False)
    mask = (rule if rule is not None else MaskRule.parse("binary")).read(mask_path)  # transparency refused too
    ih, iw = image.shape[:2]
    mh, mw = mask.shape
    rel = relation((iw, ih), (mw, mh))
    if rel == "mismatch":
        raise DataError(f"{mask_path}: mask size {mw}x{mh} is not a rescale of its image {iw}x{ih}")
    if rel == "scaled":
        interp = cv2.INTER_AREA if iw > mw else cv2.INTER_LINEAR
        image = cv2.resize(image, (mw, mh), interpolation=interp)
    return image, mask


def shrink_to(image: np.ndarray, mask: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    """Downscale a pair so its longest side is at most `max_side` (training cache; never for scoring)."""
    h, w = mask.shape
    scale = max_side / max(h, w)
    if scale >= 1:
        return image, mask
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return (cv2.resize(image, size, interpolation=cv2.INTER_AREA),
            cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST))


class SegmentationDataset(Dataset):
    """Image/mask pairs with an albumentations transform hook (`transform(image=..., mask=...)`).

    Items are dicts: `image` float CHW (normalised by the transform), `mask` float 1xHxW in {0, 1},
    `id` str, `orig_size` (h, w) of the ground-truth mask. With `cache` the decoded pairs are kept in
    memory (the whole data set is ~290 small photos); `max_side` shrinks them first (training only).
    Augmentation is seeded per (seed, epoch, index), so it does not depend on worker layout or resumption.
    """

    def __init__(self, items: pd.DataFrame, transform=None, *, max_side: int | None = None,
                 cache: bool = True, seed: int = 0):
        self.items = items.reset_index(drop=True)
        self.transform = transform
        self.max_side = max_side
        self.cache = cache
        self.seed = seed
        # shared memory: persistent DataLoader workers see the epoch the main process sets
        self._epoch = multiprocessing.Value("q", 0, lock=False)
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def from_split(cls, split: str, dataset_dir: str | Path | None = None, splits_dir: Path | None = None,
                   limit: int | None = None, **kwargs) -> SegmentationDataset:
        """Dataset over a committed split (data/splits/<split>.csv) of the fetched data set."""
        return cls.from_table(read_split(split, splits_dir), dataset_dir, limit=limit, **kwargs)

    @classmethod
    def from_table(cls, table: pd.DataFrame, dataset_dir: str | Path | None = None, limit: int | None = None,
                   **kwargs) -> SegmentationDataset:
        """Dataset over rows of a split table: id, image and mask relative to the built-in set's folder, or rows
        whose files are resolved already (`image_path`, `mask_path`, `mask_rule`: `data.selection.SetSplits`)."""
        if limit:
            table = table.head(limit)
        if "image_path" in table.columns:
            return cls(split_rows(table), **kwargs)
        folder = find_dataset_dir(dataset_dir)
        items = pd.DataFrame({
            "id": table["id"].astype(str),
            "image_path": [resolve_listed_path(folder, f"_/{p}") for p in table["image"]],
            "mask_path": [resolve_listed_path(folder, f"_/{p}") for p in table["mask"]],
        })
        return cls(items, **kwargs)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def epoch(self) -> int:
        return int(self._epoch.value)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.value = int(epoch)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The decoded pair at mask resolution (shrunk to `max_side` if set)."""
        if index in self._cache:
            return self._cache[index]
        image, mask = load_item(self.items.iloc[index])
        if self.max_side:
            image, mask = shrink_to(image, mask, self.max_side)
        if self.cache:
            self._cache[index] = (image, mask)
        return image, mask

    def preload(self) -> None:
        for i in range(len(self)):
            self.load(i)

    def __getitem__(self, index: int) -> dict:
        image, mask = self.load(index)
        h, w = mask.shape
        if self.transform is not None:
            if hasattr(self.transform, "set_random_seed"):
                self.transform.set_random_seed(_sample_seed(self.seed, self.epoch, index))
            out = self.transform(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        if not isinstance(image, torch.Tensor):
            image = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float() / 255.0
        mask = torch.as_tensor(np.asarray(mask)).float()
        if mask.ndim == 2:
            mask = mask.unsqueeze(0)
        return {"image": image, "mask": mask, "id": self.items.iloc[index]["id"],
                "orig_size": torch.tensor([h, w])}


def split_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The item columns of a table whose files are resolved: id, image_path, mask_path, and mask_rule and dataset
    where the table has them."""
    keep = [c for c in ("id", "image_path", "mask_path", "mask_rule", "dataset") if c in table.columns]
    return table[keep].assign(id=table["id"].astype(str)).reset_index(drop=True)


def load_item(row) -> tuple[np.ndarray, np.ndarray]:
    """`load_pair` of an items row (a Series or a namedtuple), by its `mask_rule` when it has one."""
    get = row.get if hasattr(row, "get") else lambda key, default=None: getattr(row, key, default)
    rule = get("mask_rule", None)
    return load_pair(Path(get("image_path")), Path(get("mask_path")),
                     None if rule in (None, "binary") or pd.isna(rule) else MaskRule.parse(rule))


def _sample_seed(seed: int, epoch: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])
