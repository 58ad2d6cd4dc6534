"""The training levers of #37, each off by default: scale augmentation (augment=zoom), L2-SP toward the starting
weights, WiSE-FT interpolation, per-set sampling weights and a fixed epoch, validation over several sets, ignore
bands on automatic labels, and a teacher's cached probabilities."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import image_and_box_mask

from seglib.infra.errors import CheckpointError, ConfigError, DataError, SeglibError
from seglib.infra.values import parse_assignments
from seglib.profiles import make_config
from seglib.settings import TrainConfig, config_from_dict

# the cheapest model with starting weights: MediaPipe's encoder (bundled) under a new, narrow U-Net decoder
PRETRAINED = {"model": "mediapipe-unet", "encoder_weights": "mediapipe", "base_channels": 4, "input_size": 32}


# ------------------------------------------------------------------ settings


def test_the_levers_are_off_by_default_and_older_configs_get_them_off():
    cfg = TrainConfig()
    assert (cfg.l2sp_weight, cfg.data_weights, cfg.epoch_samples, cfg.ignore_band, cfg.teacher_masks) == \
        (0.0, "", 0, 0, "")
    old = {k: v for k, v in make_config("smoke").to_saved_dict().items()
           if k not in ("l2sp_weight", "data_weights", "epoch_samples", "ignore_band", "teacher_masks")}
    old["config_schema"] = 4
    assert config_from_dict(old) == make_config("smoke")


def test_the_levers_take_their_values():
    cfg = make_config("smoke", parse_assignments([
        "augment=zoom", "data_weights=2", "epoch_samples=40", "ignore_band=3", "teacher_masks=runs/teacher",
        "distill_weight=0.5"]))
    assert (cfg.augment, cfg.data_weights, cfg.epoch_samples, cfg.ignore_band, cfg.teacher_masks) == \
        ("zoom", "2", 40, 3, "runs/teacher")
    assert make_config("cpu", {"l2sp_weight": "0.01"}).l2sp_weight == 0.01


@pytest.mark.parametrize(("settings", "says"), [
    (["data_weights=a,b"], "setting data_weights='a,b': empty .* or numbers 0 or more"),
    (["data_weights=-1"], "setting data_weights='-1': empty"),
    (["data_weights=0"], "at least one positive"),
    (["data_weights=1,1"], r"settings data_weights=1,1 and data=human-seg: give one weight per set \(1\)"),
    (["epoch_samples=-1"], "setting epoch_samples=-1: must be 0 or more"),
    (["epoch_samples=20", "geometry=rect"], "settings data_weights/epoch_samples and geometry=rect"),
    (["ignore_band=-2"], "setting ignore_band=-2: must be 0 or more"),
    (["ignore_band=1000"], "setting ignore_band=1000: at most 256"),
    (["ignore_band=1.5"], r"setting ignore_band=1.5: expected int"),
    (["l2sp_weight=-0.1"], "setting l2sp_weight=-0.1: must be 0 or more"),
    (["l2sp_weight=0.1"], "settings l2sp_weight=0.1 and encoder_weights=none: L2-SP pulls toward starting weights"),
    (["edge_weight=-0.5"], "setting edge_weight=-0.5: must be 0 or more"),
    (["edge_weight=4", "bce_weight=0"], "settings edge_weight=4 and bce_weight=0: edge_weight weighs the BCE term"),
    (["lovasz_weight=-1"], "setting lovasz_weight=-1.0: must be 0 or more"),
    (["dice_weight=0", "bce_weight=0"], "settings dice_weight=0, bce_weight=0 and lovasz_weight=0: the loss would be"),
    (["teacher_masks=t"], "settings teacher_masks=t and distill_weight=0: the teacher would not be used"),
    (["teacher_masks=t", "distill_weight=1", "composite=0.5"], "settings teacher_masks and composite=0.5"),
    (["augment=zoomed"], "expected one of none, light, standard, strong, zoom"),
])
def test_a_bad_lever_setting_is_a_one_line_error(settings, says):
    with pytest.raises(ConfigError, match=says) as info:
        make_config("smoke", parse_assignments(settings))
    assert "\n" not in str(info.value)


def test_a_teacher_folder_setting_is_a_path_on_one_line():
    from seglib.settings import validate

    with pytest.raises(ConfigError, match=r"setting teacher_masks='a\\nb': empty \(off\) or a folder's path"):
        validate(TrainConfig(teacher_masks="a\nb", distill_weight=1.0))


# ------------------------------------------------------------------ scale augmentation


def test_zoom_keeps_masks_binary_and_aligned_and_varies_the_figure_size():
    from seglib.transforms.checks import apply_transform, binary_alignment_check
    from seglib.transforms.pipelines import train_transform

    image, mask = image_and_box_mask(80, 64)
    pipeline = train_transform(64, "zoom", seed=0)
    check = binary_alignment_check(image, mask, pipeline, n=24, seed=1)
    assert check["binary"].all() and check["aligned"].all()
    sizes = [apply_transform(pipeline, image, mask)[1].mean() for _ in range(40)]
    standard = train_transform(64, "standard", seed=0)
    usual = [apply_transform(standard, image, mask)[1].mean() for _ in range(40)]
    assert min(sizes) < 0.5 * min(usual) and max(sizes) > 1.3 * max(usual)  # smaller and larger figures


def test_zoom_keeps_a_figure_cut_by_the_frame_against_its_edge():
    from seglib.transforms.zoom import ZoomFigure

    image, mask = image_and_box_mask(60, 60)
    mask[:] = 0
    mask[30:, 20:40] = 1  # cut by the bottom edge: a figure seen from the waist up, upside down
    zoom = ZoomFigure(fills=(0.2, 0.3), p=1.0)
    zoom.set_random_seed(0)
    for _ in range(5):
        out = zoom(image=image, mask=mask)["mask"]
        assert out.sum() < mask.sum() and out[-1].any()  # smaller, and still standing on the bottom edge


# ------------------------------------------------------------------ L2-SP


def test_l2sp_is_zero_at_the_start_and_grows_as_the_weights_move():
    from seglib.training.parts import build_parts

    cfg = make_config("smoke", {**PRETRAINED, "l2sp_weight": 0.5})
    parts = build_parts(cfg)
    penalty = parts.penalty
    names = set(penalty.names)
    assert names and all(n.startswith("encoder.") for n in names)  # the decoder has no starting value
    assert any(not n.startswith("encoder.") for n, _ in parts.model.named_parameters())
    assert penalty(parts.model).item() == 0.0
    name = sorted(names)[0]
    with torch.no_grad():
        dict(parts.model.named_parameters())[name].add_(0.1)
    moved = dict(parts.model.named_parameters())[name].numel() * 0.1 ** 2
    assert penalty(parts.model).item() == pytest.approx(0.5 / 2 * moved, rel=1e-4)
    decays = {id(p): g["weight_decay"] for g in parts.optimizer.param_groups for p in g["params"]}
    for n, p in parts.model.named_parameters():
        assert decays[id(p)] == (0.0 if n in names else cfg.weight_decay)  # decay on the new weights only


def test_a_training_step_with_l2sp_moves_away_from_the_start_and_pays_for_it():
    from seglib.training.parts import build_parts

    parts = build_parts(make_config("smoke", {**PRETRAINED, "l2sp_weight": 1.0, "lr": 0.05}))
    images, masks = torch.randn(2, 3, 32, 32), (torch.rand(2, 1, 32, 32) > 0.5).float()
    for _ in range(2):
        parts.step(images, masks)
    assert parts.penalty(parts.model).item() > 0


# ------------------------------------------------------------------ WiSE-FT


@pytest.fixture
def fine_tuned(tmp_path):
    """A checkpoint of the pretrained model with every weight moved, and the model it holds."""
    from seglib.checkpoint import make_checkpoint, save_checkpoint
    from seglib.models.model import model_for

    cfg = make_config("smoke", PRETRAINED)
    torch.manual_seed(0)
    model = model_for(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    state = make_checkpoint(model, cfg, epoch=3, val_iou=0.7, best_val_iou=0.7)
    state["data_split"] = {"train_ids": ["a", "b"], "val_ids": ["c"], "photo_sha1": ["0123"], "datasets": ["x"]}
    return save_checkpoint(state, tmp_path / "best.pt"), model, cfg


def test_interpolation_at_0_gives_the_start_and_at_1_the_fine_tuned_weights(fine_tuned, tmp_path):
    from seglib.checkpoint import load_checkpoint
    from seglib.models.model import starting_state
    from seglib.training.interpolate import interpolate_checkpoint

    path, model, cfg = fine_tuned
    tuned, start = load_checkpoint(path)["model_state"], starting_state(cfg)
    at = {a: load_checkpoint(interpolate_checkpoint(path, a, tmp_path / f"wise{a}.pt")) for a in (0.0, 0.5, 1.0)}
    for name, value in tuned.items():
        expected = start.get(name, value)
        assert torch.equal(at[0.0]["model_state"][name], expected)
        assert torch.equal(at[1.0]["model_state"][name], value)
        if name in start and not torch.equal(start[name], value):
            assert torch.allclose(at[0.5]["model_state"][name], (start[name] + value) / 2, atol=1e-6)
    written = at[0.5]
    assert written["interpolation"]["alpha"] == 0.5 and written["interpolation"]["source_epoch"] == 3
    assert written["data_split"] == load_checkpoint(path)["data_split"]  # the same training photos
    assert (written["config"], written["threshold"], written["input_size"]) == \
        (load_checkpoint(path)["config"], cfg.threshold, cfg.input_size)
    assert "WiSE-FT" in written["weights"] and written["optimizer_state"] is None and "val_iou" not in written


def test_interpolation_refusals_are_one_line(fine_tuned, tmp_path):
    from seglib.checkpoint import make_checkpoint, save_checkpoint
    from seglib.models.model import model_for
    from seglib.training.interpolate import interpolate_checkpoint

    path, _, _ = fine_tuned
    with pytest.raises(ConfigError, match=r"alpha=1.5: expected a number from 0"):
        interpolate_checkpoint(path, 1.5, tmp_path / "x.pt")
    with pytest.raises(SeglibError, match="is a source checkpoint"):
        interpolate_checkpoint(path, 0.5, path)
    interpolate_checkpoint(path, 0.5, tmp_path / "w.pt")
    with pytest.raises(SeglibError, match="already exists; refusing to overwrite"):
        interpolate_checkpoint(path, 0.5, tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match=r"already made in weight space \(WiSE-FT, alpha 0.5\)"):
        interpolate_checkpoint(tmp_path / "w.pt", 0.5, tmp_path / "ww.pt")
    scratch = make_config("smoke")
    save_checkpoint(make_checkpoint(model_for(scratch), scratch, epoch=1, val_iou=0.1, best_val_iou=0.1),
                    tmp_path / "scratch.pt")
    with pytest.raises(CheckpointError, match="trained from encoder_weights=none; no starting weights") as info:
        interpolate_checkpoint(tmp_path / "scratch.pt", 0.5, tmp_path / "s.pt")
    assert "\n" not in str(info.value)


def test_seglib_interpolate_writes_a_checkpoint_that_predicts(fine_tuned, tmp_path, capsys):
    from seglib.checkpoint import model_from_checkpoint
    from seglib.cli import main

    path, _, _ = fine_tuned
    out = tmp_path / "half.pt"
    assert main(["interpolate", "--checkpoint", str(path), "--alpha", "0.5", "--out", str(out)]) == 0
    assert "tensors interpolated" in capsys.readouterr().out
    model, _ = model_from_checkpoint(torch.load(out, weights_only=True))
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 1, 32, 32)
    assert main(["interpolate", "--checkpoint", str(path), "--alpha", "0.5", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


# ------------------------------------------------------------------ sampling weights and validation over sets


class _Photos:
    """What a sampler and validation read of a dataset: its items (id, dataset)."""

    def __init__(self, sizes: dict[str, int]):
        rows = [(f"{name}/{i}", name) for name, n in sizes.items() for i in range(n)]
        self.items = pd.DataFrame(rows, columns=["id", "dataset"])

    def __len__(self) -> int:
        return len(self.items)


def _drawn_sets(sampler, photos) -> pd.Series:
    return photos.items["dataset"].iloc[list(sampler)].value_counts(normalize=True)


def test_the_sampler_draws_sets_in_the_given_proportions_seeded_by_epoch():
    from seglib.training.loaders import SetSampler
    from seglib.training.runtime import Runtime

    photos = _Photos({"a": 20, "b": 200, "c": 40})
    cfg = make_config("smoke", {"data": "a,b,c", "data_weights": "1,1,2", "epoch_samples": 4000})
    sampler = SetSampler.for_config(cfg, photos, Runtime(torch.device("cpu")))
    assert len(sampler) == 4000
    shares = _drawn_sets(sampler, photos)
    assert shares["a"] == pytest.approx(0.25, abs=0.03) and shares["b"] == pytest.approx(0.25, abs=0.03)
    assert shares["c"] == pytest.approx(0.5, abs=0.03)
    first = list(sampler)
    assert list(sampler) == first  # a function of (seed, epoch)
    sampler.set_epoch(2)
    assert list(sampler) != first
    halves = [list(SetSampler.for_config(cfg, photos, Runtime(torch.device("cpu"), rank=r, world_size=2)))
              for r in (0, 1)]
    assert sorted(halves[0] + halves[1]) == sorted(first) and len(halves[0]) == len(halves[1]) == 2000


def test_without_weights_an_epoch_of_fixed_size_draws_each_photo_in_turn():
    from seglib.training.loaders import SetSampler
    from seglib.training.runtime import Runtime

    photos = _Photos({"a": 10, "b": 30})
    cfg = make_config("smoke", {"data": "a,b", "epoch_samples": 100})
    drawn = list(SetSampler.for_config(cfg, photos, Runtime(torch.device("cpu"))))
    assert len(drawn) == 100 and sorted(drawn[:40]) == list(range(40))  # every photo once before any twice
    assert _drawn_sets(SetSampler.for_config(cfg.replace(epoch_samples=40), photos,
                                             Runtime(torch.device("cpu"))), photos)["b"] == 0.75


def test_validation_weights_each_set_equally():
    from seglib.training.runtime import Runtime
    from seglib.training.validation import validate

    photos = _Photos({"big": 6, "small": 2})
    masks = torch.ones(8, 1, 4, 4)
    masks[:6] = 0  # the model below predicts a person everywhere: IoU 0 on "big" (empty masks), 1 on "small"
    masks[:6, :, 0, 0] = 1
    batches = [{"image": torch.zeros(4, 3, 4, 4), "mask": masks[i:i + 4], "id": list(photos.items["id"][i:i + 4])}
               for i in (0, 4)]

    class Loader(list):
        dataset = photos

    everywhere = torch.nn.Conv2d(3, 1, 1)
    torch.nn.init.zeros_(everywhere.weight)
    torch.nn.init.constant_(everywhere.bias, 5.0)
    from seglib.losses import DiceBCELoss

    checked = validate(everywhere, Loader(batches), DiceBCELoss(), make_config("smoke"), Runtime(torch.device("cpu")),
                       use_amp=False)
    assert checked.per_set == pytest.approx({"big": 1 / 16, "small": 1.0})
    assert checked.iou == pytest.approx((1 / 16 + 1.0) / 2)  # not (6/16 + 2) / 8, the photos' mean
    assert set(checked.columns()) == {"val_iou_big", "val_iou_small"}


# ------------------------------------------------------------------ ignore regions


@pytest.mark.parametrize("per_image", [False, True])
def test_ignored_pixels_do_not_change_the_loss(per_image):
    from seglib.losses import IGNORE, DiceBCELoss

    torch.manual_seed(0)
    loss_fn = DiceBCELoss(dice_per_image=per_image)
    target = (torch.rand(2, 1, 8, 8) > 0.5).float()
    ignored = torch.zeros_like(target, dtype=torch.bool)
    ignored[:, :, 2:4] = True
    logits = torch.randn(2, 1, 8, 8)
    other = logits.masked_fill(ignored, 7.0)
    marked = target.masked_fill(ignored, IGNORE)
    assert loss_fn(logits, marked).item() == pytest.approx(loss_fn(other, marked).item(), abs=1e-6)
    flipped = marked.masked_fill(ignored, IGNORE)  # whatever the label under the ignore value was
    assert loss_fn(logits, flipped).item() == pytest.approx(loss_fn(logits, marked).item())
    assert loss_fn(logits, target).item() == pytest.approx(DiceBCELoss(dice_per_image=per_image)(logits, target).item())
    grad = logits.clone().requires_grad_(True)
    loss_fn(grad, marked).backward()
    assert grad.grad[ignored].abs().max() == 0 and grad.grad[~ignored].abs().max() > 0


def test_the_edge_band_covers_both_sides_of_the_edge_and_nothing_else():
    from seglib.losses import IGNORE
    from seglib.training.targets import edge_band

    mask = torch.zeros(1, 12, 12)
    mask[:, 4:8, 4:8] = 1
    banded = edge_band(mask, 1)
    assert banded[0, 5:7, 5:7].eq(1).all()  # the inside, more than one pixel from the edge
    assert banded[0, 3:9, 3:9].eq(IGNORE).sum() == 36 - 4  # the ring each side of the edge
    assert banded[0, 0].eq(0).all() and banded[0, :, 0].eq(0).all()  # far background, and the frame is no edge


# ------------------------------------------------------------------ a teacher's cached probabilities


def test_a_teacher_folder_missing_a_photo_is_a_one_line_error_naming_it(tmp_path):
    from seglib.training.targets import TeacherProbabilities

    teacher = tmp_path / "teacher"
    teacher.mkdir()
    np.save(teacher / "p1.npy", np.zeros((4, 4), np.float32))
    items = pd.DataFrame({"id": ["p1", "p2", "p3"], "image_path": [f"/photos/p{i}.jpg" for i in (1, 2, 3)]})
    with pytest.raises(DataError, match=r"no probabilities for training photo 'p2' \(expected .*p2.npy\) and 1 more")\
            as info:
        TeacherProbabilities(teacher).check_complete(items)
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match="teacher_masks=.*nothere: no such folder"):
        TeacherProbabilities(tmp_path / "nothere")


def _teacher_of_masks(splits, folder, out):
    """A teacher folder whose probabilities are each training photo's own mask, at photo resolution."""
    import cv2

    from seglib.data.dataset import SegmentationDataset, load_pair
    from seglib.infra.io import load_rgb

    out.mkdir()
    for row in SegmentationDataset.from_split("train", folder, splits).items.itertuples():
        _, mask = load_pair(row.image_path, row.mask_path)
        h, w = load_rgb(row.image_path).shape[:2]
        np.save(out / f"{row.image_path.stem}.npy", cv2.resize(mask.astype(np.float32), (w, h),
                                                              interpolation=cv2.INTER_NEAREST))


def test_the_teacher_follows_the_photo_through_augmentation(synthetic_splits, tmp_path):
    from seglib.training.loaders import make_loaders
    from seglib.training.runtime import Runtime

    folder, splits = synthetic_splits
    _teacher_of_masks(splits, folder, tmp_path / "teacher")
    cfg = make_config("smoke", {"augment": "zoom", "teacher_masks": str(tmp_path / "teacher"), "distill_weight": 1.0,
                                "limit_train": 0})
    loader, _ = make_loaders(cfg, Runtime(torch.device("cpu")), folder, splits)
    batch = next(iter(loader))
    assert batch["teacher"].shape == batch["mask"].shape
    agree = (batch["teacher"] > 0.5) == (batch["mask"] > 0.5)
    assert agree.float().mean() > 0.97  # aligned: the same geometric ops (edges may differ by a resize's pixel)


def test_a_smoke_training_with_every_lever_on(synthetic_splits, tmp_path, monkeypatch):
    """augment=zoom, a fixed epoch, an ignore band (the set's description said automatic) and a teacher folder."""
    from seglib.checkpoint import load_checkpoint
    from seglib.data import descriptions
    from seglib.training.engine import train

    folder, splits = synthetic_splits
    _teacher_of_masks(splits, folder, tmp_path / "teacher")
    monkeypatch.setattr(descriptions.DatasetSpec, "labels", "automatic", raising=False)
    cfg = make_config("smoke", {"augment": "zoom", "epoch_samples": 8, "data_weights": "1", "ignore_band": 2,
                                "teacher_masks": str(tmp_path / "teacher"), "distill_weight": 0.5, "epochs": 2,
                                "limit_train": 0, "threads": 1})
    result = train(cfg, tmp_path / "run", dataset_dir=folder, splits_dir=splits, progress=False)
    assert result.epochs_run == 2 and np.isfinite(result.best_val_iou)
    saved = load_checkpoint(tmp_path / "run" / "best.pt")
    assert "cached probabilities" in saved["weights"] and saved["config"]["epoch_samples"] == 8


@pytest.mark.parametrize("automatic", [True, False])
def test_the_band_applies_to_sets_whose_labels_are_automatic_only(synthetic_splits, monkeypatch, automatic):
    from seglib.losses import IGNORE
    from seglib.training import loaders
    from seglib.training.loaders import make_loaders
    from seglib.training.runtime import Runtime

    folder, splits = synthetic_splits
    if automatic:  # the synthetic set's description says nothing of its labels ("" ): count that as automatic
        monkeypatch.setattr(loaders, "AUTOMATIC_LABELS", "")
    cfg = make_config("smoke", {"ignore_band": 2, "augment": "none"})
    train_loader, val_loader = make_loaders(cfg, Runtime(torch.device("cpu")), folder, splits)
    masks = next(iter(train_loader))["mask"]
    assert masks.eq(IGNORE).any() == automatic and masks.eq(1).any()
    assert not next(iter(val_loader))["mask"].eq(IGNORE).any()  # val scores every pixel


@pytest.mark.parametrize("fill", [True, False])
def test_fill_pinholes_cleans_the_training_masks_only(tmp_path, fill):
    from PIL import Image

    from seglib.training.targets import TrainingSet

    mask = np.zeros((24, 24), np.uint8)
    mask[4:20, 6:18] = 255
    mask[10, 10] = 0  # a pinhole
    mask[1, 22] = 255  # a speck
    Image.fromarray(np.full((24, 24, 3), 90, np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(mask).save(tmp_path / "a.mask.png")
    items = pd.DataFrame({"id": ["a"], "image_path": [tmp_path / "a.png"], "mask_path": [tmp_path / "a.mask.png"]})
    training = TrainingSet(items, fill_pinholes=fill)
    for _ in range(2):  # decoded, then from the cache
        loaded = training.load(0)[1]
        assert (loaded[10, 10], loaded[1, 22]) == ((1, 0) if fill else (0, 1))
        assert loaded[4:20, 6:18].sum() == 16 * 12 - (0 if fill else 1)
    assert make_config("cpu", {"fill_pinholes": "true"}).fill_pinholes and not make_config("cpu").fill_pinholes


def test_history_gains_a_column_per_set(tmp_path):
    from seglib.training.progress import HISTORY_COLUMNS, write_history

    row = dict.fromkeys(HISTORY_COLUMNS, 1.0)
    write_history(tmp_path, [{**row, "val_iou_a": 0.5, "val_iou_b": 0.25}])
    table = pd.read_csv(tmp_path / "history.csv")
    assert list(table.columns) == [*HISTORY_COLUMNS, "val_iou_a", "val_iou_b"] and table["val_iou_b"][0] == 0.25


# ------------------------------------------------------------------ model soups


def _another_seed(fine_tuned, tmp_path, name: str, shift: float, **changes):
    """The fine-tuned checkpoint with every floating-point weight moved by `shift` (another run of its recipe)."""
    from seglib.checkpoint import load_checkpoint, save_checkpoint

    state = load_checkpoint(fine_tuned[0])
    state["model_state"] = {k: v + shift if v.is_floating_point() else v for k, v in state["model_state"].items()}
    state.update(changes)
    return save_checkpoint(state, tmp_path / name)


def test_a_uniform_soup_is_the_mean_of_the_runs_weights_with_the_first_s_record(fine_tuned, tmp_path, capsys):
    from seglib.checkpoint import load_checkpoint, model_from_checkpoint
    from seglib.cli import main

    path = fine_tuned[0]
    runs = [path, _another_seed(fine_tuned, tmp_path, "b.pt", 0.3), _another_seed(fine_tuned, tmp_path, "c.pt", 0.6)]
    out = tmp_path / "soup.pt"
    assert main(["soup", *map(str, runs), "--out", str(out)]) == 0
    assert "mean of 3 checkpoints" in capsys.readouterr().out
    soup, first = load_checkpoint(out), load_checkpoint(path)
    for name, value in first["model_state"].items():
        expected = value + 0.3 if value.is_floating_point() else value
        assert torch.allclose(soup["model_state"][name], expected, atol=1e-5), name
    assert soup["data_split"] == first["data_split"] and soup["threshold"] == first["threshold"]
    assert soup["interpolation"]["method"] == "uniform soup" and len(soup["interpolation"]["sources"]) == 3
    assert "uniform soup" in soup["weights"] and soup["optimizer_state"] is None and "val_iou" not in soup
    model, _ = model_from_checkpoint(torch.load(out, weights_only=True))
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 1, 32, 32)


def test_a_soup_refuses_runs_that_do_not_share_network_start_and_photos_in_one_line(fine_tuned, tmp_path, capsys):
    from seglib.cli import main
    from seglib.training.interpolate import average_checkpoints, interpolate_checkpoint

    path = fine_tuned[0]
    other_photos = _another_seed(fine_tuned, tmp_path, "p.pt", 0.1, data_split={"train_ids": ["a"], "val_ids": ["c"]})
    with pytest.raises(CheckpointError, match=r"p.pt: not the same training photos as .*best.pt; a soup averages"):
        average_checkpoints([path, other_photos], tmp_path / "s.pt")
    with pytest.raises(ConfigError, match="at least two"):
        average_checkpoints([path], tmp_path / "s.pt")
    with pytest.raises(ConfigError, match="listed twice"):
        average_checkpoints([path, path], tmp_path / "s.pt")
    wise = interpolate_checkpoint(path, 0.5, tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match=r"w.pt: already made in weight space \(WiSE-FT, alpha 0.5\)"):
        average_checkpoints([path, wise], tmp_path / "s.pt")
    soup = average_checkpoints([path, _another_seed(fine_tuned, tmp_path, "b.pt", 0.2)], tmp_path / "s.pt")
    with pytest.raises(CheckpointError, match=r"already made in weight space \(uniform soup of 2 checkpoints\)"):
        interpolate_checkpoint(soup, 0.5, tmp_path / "ws.pt")
    assert main(["soup", str(path), str(tmp_path / "b.pt"), "--out", str(soup)]) == 2  # nothing overwritten
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists; refusing to overwrite" in err
