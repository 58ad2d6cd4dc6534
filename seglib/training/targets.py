"""What a training photo is scored against besides its mask: a band along the label edges of sets whose masks a
program drew (`ignore_band`; the loss leaves its pixels out, `losses.IGNORE`), and a teacher's cached probabilities
(`teacher_masks`), carried through the photo's augmentation as a second mask (`TrainingSet`)."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from seglib.data.dataset import SegmentationDataset
from seglib.data.mask_rules import without_pinholes
from seglib.infra.errors import DataError
from seglib.infra.paths import display_path
from seglib.losses import IGNORE

TEACHER = "teacher"  # the item key and the extra mask target of a teacher's probabilities
ASPECT_TOLERANCE = 0.03  # a teacher's array may differ from its photo's aspect by this much (rounding of a resize)


def edge_band(mask: torch.Tensor, width: int) -> torch.Tensor:
    """The (1 x) H x W mask with every pixel within `width` pixels of a person/background edge (a square
    neighbourhood) set to IGNORE; the frame of the photo is no edge."""
    person = (mask == 1).float().reshape(1, 1, *mask.shape[-2:])
    size = 2 * width + 1
    grown = F.max_pool2d(person, size, stride=1, padding=width)
    shrunk = -F.max_pool2d(-person, size, stride=1, padding=width)
    return mask.masked_fill((grown != shrunk).reshape(mask.shape), IGNORE)


class TeacherProbabilities:
    """A teacher's probabilities of photos, one `<photo stem>.npy` each in `folder` (`<folder>/<set>/<stem>.npy`
    first, for sets whose photo names clash), at the photo's resolution: floats from 0 to 1, or uint8 0-255."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise DataError(f"teacher_masks={folder}: no such folder (the teacher's <photo stem>.npy probabilities)")

    def path(self, row) -> Path:
        """Where the probabilities of an items row's photo are: the set's subfolder when it has the file."""
        stem = Path(str(row["image_path"])).stem
        nested = self.folder / str(row.get("dataset", "")) / f"{stem}.npy"
        return nested if row.get("dataset") and nested.is_file() else self.folder / f"{stem}.npy"

    def check_complete(self, items: pd.DataFrame) -> None:
        """A DataError naming the first photo of `items` without probabilities, and how many lack them."""
        missing = [(row["id"], self.path(row)) for _, row in items.iterrows() if not self.path(row).is_file()]
        if missing:
            photo, path = missing[0]
            more = f" and {len(missing) - 1} more photo(s)" if len(missing) > 1 else ""
            raise DataError(f"teacher_masks={display_path(self.folder)}: no probabilities for training photo "
                            f"{photo!r} (expected {display_path(path)}){more}")

    def read(self, row, shape: tuple[int, int]) -> np.ndarray:
        """The probabilities of an items row's photo as uint8 0-255, resized to `shape` (h, w: the mask's as
        trained); an array that is not a probability map of the photo is a DataError naming the file."""
        path = self.path(row)
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"{display_path(path)}: cannot read the teacher's probabilities ({exc})") from None
        array = np.squeeze(array)
        if array.ndim != 2 or not array.size:
            raise DataError(f"{display_path(path)}: teacher probabilities of shape {array.shape}, expected H x W")
        if array.dtype != np.uint8:
            array = array.astype(np.float32)
            if not np.isfinite(array).all() or array.min() < -1e-3 or array.max() > 1 + 1e-3:
                raise DataError(f"{display_path(path)}: teacher probabilities outside 0-1 (or NaN); expected "
                                "probabilities, not logits")
            array = np.clip(np.rint(array * 255), 0, 255).astype(np.uint8)
        h, w = shape
        if not math.isclose(array.shape[1] / array.shape[0], w / h, rel_tol=ASPECT_TOLERANCE):
            raise DataError(f"{display_path(path)}: teacher probabilities {array.shape[1]}x{array.shape[0]} are "
                            f"not a rescale of photo {row['id']!r} ({w}x{h} as trained)")
        return cv2.resize(array, (w, h), interpolation=cv2.INTER_AREA if array.shape[0] > h else cv2.INTER_LINEAR)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of a photo in an epoch: the one `SegmentationDataset` draws, so a photo is augmented
    alike with a teacher or without."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class TrainingSet(SegmentationDataset):
    """The training photos (a `SegmentationDataset`) with an ignore band along the edges of the masks of the sets in
    `banded` (`band` pixels of the network input, each side), masks without pinholes with `fill_pinholes`, and, with a
    `teacher`, its probabilities of each
    photo as the item's `teacher` (1 x H x W floats 0-1, augmented with the photo; the transform needs the extra
    target: `transform.add_targets({TEACHER: "mask"})`)."""

    def __init__(self, items: pd.DataFrame, transform=None, *, band: int = 0, banded: frozenset = frozenset(),
                 teacher: TeacherProbabilities | None = None, fill_pinholes: bool = False, **kwargs):
        super().__init__(items, transform, **kwargs)
        self.fill_pinholes = fill_pinholes
        self.band = band
        sets = self.items["dataset"] if "dataset" in self.items.columns else pd.Series([""] * len(self.items))
        self.banded = [band > 0 and str(s) in banded for s in sets]
        self.teacher = teacher
        self.teacher_cache: dict[int, np.ndarray] = {}
        if teacher is not None:
            teacher.check_complete(self.items)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The decoded pair (`SegmentationDataset.load`), its mask without pinholes when `fill_pinholes`."""
        cached = index in self._cache
        image, mask = super().load(index)
        if self.fill_pinholes and not cached:
            mask = without_pinholes(mask)
            if self.cache:
                self._cache[index] = (image, mask)
        return image, mask

    def teacher_at(self, index: int) -> np.ndarray:
        """The teacher's probabilities of photo `index` at its cached pair's size (uint8 0-255), read once."""
        if index not in self.teacher_cache:
            mask = self.load(index)[1]
            self.teacher_cache[index] = self.teacher.read(self.items.iloc[index], mask.shape[:2])
        return self.teacher_cache[index]

    def preload(self) -> None:
        super().preload()
        if self.teacher is not None:
            for i in range(len(self)):
                self.teacher_at(i)

    def __getitem__(self, index: int) -> dict:
        item = super().__getitem__(index) if self.teacher is None else self.with_teacher(index)
        if self.banded[index]:
            item["mask"] = edge_band(item["mask"], self.band)
        return item

    def with_teacher(self, index: int) -> dict:
        """The item with the teacher's probabilities, through the same transform as the photo and its mask."""
        image, mask = self.load(index)
        teacher = self.teacher_at(index)
        h, w = mask.shape
        if self.transform is not None:
            self.transform.set_random_seed(sample_seed(self.seed, self.epoch, index))
            out = self.transform(image=image, mask=mask, **{TEACHER: teacher})
            image, mask, teacher = out["image"], out["mask"], out[TEACHER]
        if not isinstance(image, torch.Tensor):
            image = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float() / 255.0
        return {"image": image, "mask": _channel(mask), TEACHER: _channel(teacher) / 255.0,
                "id": self.items.iloc[index]["id"], "orig_size": torch.tensor([h, w])}


def _channel(array) -> torch.Tensor:
    """A mask-like array as a float 1 x H x W tensor."""
    tensor = torch.as_tensor(np.asarray(array)).float()
    return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor
