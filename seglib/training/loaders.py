"""Train and val loaders for a training run: the split read once, photos decoded once, epochs replayable."""

from __future__ import annotations

import os
from functools import partial

import pandas as pd
import torch
from torch.utils.data import DataLoader, RandomSampler, Sampler, SequentialSampler
from torch.utils.data.distributed import DistributedSampler

from seglib.data.batching import ShapeBatchSampler, pad_collate
from seglib.data.dataset import SegmentationDataset
from seglib.data.splits import split_fingerprint
from seglib.infra.errors import ConfigError
from seglib.infra.paths import display_path
from seglib.settings import AUTOMATIC_LABELS, RECT, TrainConfig, data_weights_of, input_multiple
from seglib.training.runtime import Runtime


def make_loaders(cfg: TrainConfig, runtime: Runtime, dataset_dir=None, splits_dir=None):
    """Datasets (decoded once, cached in memory) and loaders for train and val.

    The split files of the sets `cfg.data` names are read once (`data.selection.open_sets`: one version, checked
    unchanged after the photos are decoded); a val split that shares photos with train is refused. Both datasets carry that snapshot as
    `split_snapshot`, for the record of what trained the run."""
    from seglib.data.selection import check_apart_by_content, open_sets
    from seglib.data.splits import check_val_apart_from_train
    from seglib.training.targets import TEACHER, TeacherProbabilities, TrainingSet
    from seglib.transforms.compositing import BackgroundPool
    from seglib.transforms.pipelines import eval_transform, train_transform

    multiple = input_multiple(cfg)
    snapshot = open_sets(cfg.data, dataset_dir=dataset_dir, splits_dir=splits_dir,
                         during="the training data was being read")
    folder = display_path(snapshot.folder)
    if cfg.inner_fold >= 0:  # nested: the inner fold is the val set; neither it nor the fold trains
        train_table, val_table = snapshot.fold_split(cfg.fold, cfg.inner_fold)
        names = (f"{folder}/train.csv + val.csv less folds {cfg.fold} and {cfg.inner_fold}",
                 f"{folder}/folds.csv fold {cfg.inner_fold}")
    elif cfg.fold >= 0:  # cross-validation: the fold is the val set, the rest of train+val trains
        train_table, val_table = snapshot.fold_split(cfg.fold)
        names = (f"{folder}/train.csv + val.csv less fold {cfg.fold}", f"{folder}/folds.csv fold {cfg.fold}")
    else:
        train_table, val_table = snapshot.table("train"), snapshot.table("val")
        names = (f"{folder}/train.csv", f"{folder}/val.csv")
    if cfg.train_on == "train+val":  # refit: val trains too; its scores only show that training runs
        train_table = pd.concat([train_table, val_table], ignore_index=True)
        check_apart_by_content({"train": train_table, "test": snapshot.table("test")}, cfg.data)
    else:  # the epoch (and the threshold) are chosen on val: never on photos that train, by id or by bytes
        check_val_apart_from_train(train_table["id"], val_table["id"], *names)
        check_apart_by_content({"train": train_table, "val": val_table, "test": snapshot.table("test")}, cfg.data)
    # an ignore band along the label edges of sets whose masks a program drew (its description: labels: automatic;
    # a description without the field has a person's labels)
    automatic = frozenset(spec.name for spec in snapshot.specs if spec.labels == AUTOMATIC_LABELS)
    teacher = TeacherProbabilities(cfg.teacher_masks) if cfg.teacher_masks else None
    train_ds = TrainingSet.from_table(train_table, dataset_dir, limit=cfg.limit_train or None,
                                      max_side=cfg.cache_max_side, seed=cfg.seed, band=cfg.ignore_band,
                                      banded=automatic, teacher=teacher, fill_pinholes=cfg.fill_pinholes)
    backgrounds = BackgroundPool.of_dataset(train_ds) if cfg.composite > 0 else None  # train photos only
    train_ds.transform = train_transform(cfg.input_size, cfg.augment, geometry=cfg.geometry, multiple=multiple,
                                         composite=cfg.composite, backgrounds=backgrounds)
    if teacher is not None:  # the teacher's probabilities follow the photo through every geometric op
        train_ds.transform.add_targets({TEACHER: "mask"})
    val_ds = SegmentationDataset.from_table(
        val_table, dataset_dir, limit=cfg.limit_val or None,
        transform=eval_transform(cfg.input_size, geometry=cfg.geometry, multiple=multiple), max_side=cfg.cache_max_side)
    cuda = runtime.device.type == "cuda"
    workers = cfg.num_workers if cfg.num_workers >= 0 else (min(8, os.cpu_count() or 1) if cuda else 0)
    # decode once in the main process: forked workers share the cache instead of decoding every epoch
    train_ds.preload()
    val_ds.preload()
    snapshot.check_unchanged("the training data was being read")
    train_ds.split_snapshot = val_ds.split_snapshot = snapshot
    if cfg.geometry == RECT:
        return _rect_loaders(cfg, runtime, train_ds, val_ds, workers, multiple)
    if data_weights_of(cfg) is not None or cfg.epoch_samples:  # per-set shares, a fixed epoch
        train_sampler = SetSampler.for_config(cfg, train_ds, runtime)
    elif runtime.distributed:
        train_sampler = DistributedSampler(train_ds, runtime.world_size, runtime.rank, shuffle=True, seed=cfg.seed)
    else:
        train_sampler = RandomSampler(train_ds, generator=torch.Generator())
    val_sampler = (DistributedSampler(val_ds, runtime.world_size, runtime.rank, shuffle=False)
                   if runtime.distributed else SequentialSampler(val_ds))
    # persistent workers: starting them every epoch cost more than the epoch itself on a GPU; they read the
    # epoch from shared memory, so augmentation stays a function of (seed, epoch, index)
    train_loader = DataLoader(train_ds, batch_size=cfg.batch_size, sampler=train_sampler,
                              drop_last=(cfg.epoch_samples or len(train_ds)) > cfg.batch_size, num_workers=workers,
                              pin_memory=cuda, persistent_workers=workers > 0)
    # validation reads the preloaded cache and only letterboxes: worker start-up would cost more than it saves
    val_loader = DataLoader(val_ds, batch_size=cfg.batch_size, sampler=val_sampler, num_workers=0, pin_memory=cuda)
    return train_loader, val_loader


def _rect_loaders(cfg: TrainConfig, runtime: Runtime, train_ds, val_ds, workers: int, multiple: int):
    """Loaders of rectangular inputs: batches grouped by input shape (ShapeBatchSampler), padded to the largest."""
    from seglib.geometry import input_shape, pad_value

    def shapes(ds):
        return [input_shape(*ds.load(i)[1].shape, cfg.input_size, RECT, multiple) for i in range(len(ds))]

    cuda = runtime.device.type == "cuda"
    collate = partial(pad_collate, image_fill=pad_value())
    train_batches = ShapeBatchSampler(shapes(train_ds), cfg.batch_size, shuffle=True,
                                      drop_last=len(train_ds) > cfg.batch_size, seed=cfg.seed, rank=runtime.rank,
                                      world_size=runtime.world_size)
    val_batches = ShapeBatchSampler(shapes(val_ds), cfg.batch_size, rank=runtime.rank, world_size=runtime.world_size)
    train_loader = DataLoader(train_ds, batch_sampler=train_batches, collate_fn=collate, num_workers=workers,
                              pin_memory=cuda, persistent_workers=workers > 0)
    val_loader = DataLoader(val_ds, batch_sampler=val_batches, collate_fn=collate, num_workers=0, pin_memory=cuda)
    return train_loader, val_loader


class SetSampler(Sampler[int]):
    """An epoch's draw of training photos: `num_samples` indices, drawn with replacement in proportion to
    `weights` (one per photo), or without weights each photo in turn (a shuffle, repeated as needed). A function
    of (seed, epoch) alone (`set_epoch`); under torchrun each process takes every world_size-th of the same draw."""

    def __init__(self, weights: torch.Tensor | None, size: int, num_samples: int, *, seed: int = 0, rank: int = 0,
                 world_size: int = 1):
        self.weights = weights
        self.size = size
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0
        self.rank = rank
        self.world_size = world_size

    @classmethod
    def for_config(cls, cfg: TrainConfig, dataset, runtime: Runtime) -> SetSampler:
        """Each set drawn with its `data_weights` share (its photos alike within it), `epoch_samples` a epoch."""
        shares = data_weights_of(cfg)
        weights = None
        if shares is not None:
            names = [n.strip() for n in cfg.data.split(",")]
            sets = dataset.items["dataset"].astype(str) if "dataset" in dataset.items.columns else \
                pd.Series([names[0]] * len(dataset))
            counts = sets.value_counts()
            weights = torch.tensor([shares[names.index(s)] / counts[s] for s in sets], dtype=torch.float64)
            if not weights.sum() > 0:
                raise ConfigError(f"setting data_weights={cfg.data_weights}: every set with photos has weight 0")
        return cls(weights, len(dataset), cfg.epoch_samples or len(dataset), seed=cfg.seed, rank=runtime.rank,
                   world_size=runtime.world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def draw(self) -> list[int]:
        """Every process's indices of this epoch, in order."""
        generator = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        if self.weights is not None:
            return torch.multinomial(self.weights, self.num_samples, replacement=True, generator=generator).tolist()
        rounds = -(-self.num_samples // self.size)
        return torch.cat([torch.randperm(self.size, generator=generator) for _ in range(rounds)])[
            :self.num_samples].tolist()

    def __iter__(self):
        drawn = self.draw()
        usable = len(drawn) - len(drawn) % self.world_size
        return iter(drawn[self.rank:usable:self.world_size])

    def __len__(self) -> int:
        return self.num_samples // self.world_size


def set_epoch(loader: DataLoader, cfg: TrainConfig, epoch: int) -> None:
    """Make epoch `epoch`'s order and augmentation a function of (seed, epoch) alone: resumes replay exactly."""
    loader.dataset.set_epoch(epoch)
    if isinstance(loader.batch_sampler, ShapeBatchSampler):
        loader.batch_sampler.set_epoch(epoch)
        return
    sampler = loader.sampler
    if isinstance(sampler, (DistributedSampler, SetSampler)):
        sampler.set_epoch(epoch)
    elif isinstance(sampler, RandomSampler):
        sampler.generator.manual_seed(cfg.seed * 1000 + epoch)


def training_split_record(train_ds, val_ds, splits_dir=None) -> dict:
    """Which photos trained and validated the run (ids, and a hash of each photo's bytes, so that the same photos
    registered under another name are recognised too), and a fingerprint of the split files they came from."""
    from seglib.data.selection import photo_hashes

    record = {"train_ids": [str(i) for i in train_ds.items["id"]], "val_ids": [str(i) for i in val_ds.items["id"]],
              "photo_sha1": sorted(photo_hashes([*train_ds.items["image_path"], *val_ds.items["image_path"]]))}
    snapshot = getattr(train_ds, "split_snapshot", None)  # the very version make_loaders read, when it has one
    record.update(snapshot.fingerprint() if snapshot is not None else split_fingerprint(splits_dir))
    return record
