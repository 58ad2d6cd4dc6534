"""A small learned edge-refinement head (lever e's second option, issue #37), trained and judged as a study.

The head (`EdgeHead`: five 3x3 convolutions, dilations 1-2-4-8-1, 16 channels, about 10 k weights) reads the photo
at its own resolution with the model's probabilities there and adds a correction to their logit; it starts as
the identity (its last layer is zero). With `gate`, the correction fades where the model is sure (|logit| well
above 3), so that only the band around the edge moves.

It learns from the photos its model trained on (the checkpoint's record; never a val or test photo), on crops
around their masks' edges, each set drawn equally, from one of these inputs (`KINDS`):
- `real`: the model's own probabilities of those photos (in-sample, so sharper than on photos it never saw);
- `sim`: the mask itself made coarse, as CascadePSP trains its refiner (Cheng et al., CVPR 2020): its signed
  distance moved by a smooth random field of a few pixels and an offset, softened by a sigmoid; model-agnostic;
- `mix`: either, half and half.

`edge_head_study` judges each variant by the rule that chooses across domains (docs/recipes.md): every registered
set's val split at the checkpoint's val threshold and TTA, each set weighted equally, beside the model without the
head; it writes each variant's `multi_domain_val.json` for `seglib experiments --variant`.
"""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seglib.infra.errors import SeglibError
from seglib.infra.paths import display_path
from seglib.metrics import image_scores
from seglib.studies.domains import MULTI_DOMAIN, set_entry, val_record, write_val_record

logger = logging.getLogger(__name__)

KINDS = ("real", "sim", "mix")  # what the head learns from (see the module)
CROP = 128  # training crops, px, at the photo's own resolution
EDGE_CROPS = 0.85  # share of crops centred on a mask edge pixel (the rest anywhere)
EDGE_WEIGHT = 4.0  # extra loss weight within 4 px of the mask's edge
MAX_LOGIT = 8.0  # logits are clipped to +-this: probabilities within sigmoid(-8) of 0 and 1
GATE_LOGIT = 3.0  # gate: the correction fades beyond this |logit|
RGB_MEAN, RGB_STD = 0.5, 0.25  # the head's own input scaling of 0..1 RGB


class EdgeHead(nn.Module):
    """Photo (N,3,H,W, scaled) and coarse logit z (N,1,H,W; 0 at the threshold) -> refined logit z + correction."""

    def __init__(self, channels: int = 16, dilations: tuple[int, ...] = (1, 2, 4, 8, 1), gate: bool = False):
        super().__init__()
        layers, width = [], 5
        for d in dilations:
            layers += [nn.Conv2d(width, channels, 3, padding=d, dilation=d), nn.ReLU(inplace=True)]
            width = channels
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(channels, 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.gate = gate

    def forward(self, rgb: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        correction = self.out(self.body(torch.cat([rgb, z / 4, torch.sigmoid(z)], 1)))
        if self.gate:
            correction = correction * torch.sigmoid(2 * (GATE_LOGIT - z.abs()))
        return z + correction


@dataclass
class Photo:
    """One photo as the study uses it: its set, pixels, mask and the model's probabilities (float16)."""

    id: str
    set: str
    image: np.ndarray
    mask: np.ndarray
    prob: np.ndarray


def coarse_logits(prob: np.ndarray, threshold: float) -> np.ndarray:
    """The model's probabilities as a logit that is 0 at `threshold`, clipped to +-MAX_LOGIT."""
    p = np.clip(np.asarray(prob, np.float32), 1e-4, 1 - 1e-4)
    t = float(np.clip(threshold, 1e-4, 1 - 1e-4))
    return np.clip(np.log(p / (1 - p)) - np.log(t / (1 - t)), -MAX_LOGIT, MAX_LOGIT).astype(np.float32)


def simulated_logits(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A coarse logit made from a mask: its signed distance (px, positive inside) moved by a smooth random field
    (amplitude 0-4 px, smoothness 4-16 px) and an offset (sd 1.5 px), divided by a softness of 0.7-3 px."""
    m = (np.asarray(mask) > 0).astype(np.uint8)
    signed = cv2.distanceTransform(m, cv2.DIST_L2, 3) - cv2.distanceTransform(1 - m, cv2.DIST_L2, 3)
    h, w = m.shape
    smooth, amplitude = rng.uniform(4, 16), rng.uniform(0, 4)
    grid = rng.standard_normal((max(2, int(h / smooth)), max(2, int(w / smooth)))).astype(np.float32)
    field = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    z = (signed + amplitude * field + rng.normal(0, 1.5)) / rng.uniform(0.7, 3.0)
    return np.clip(z, -MAX_LOGIT, MAX_LOGIT).astype(np.float32)


def scaled_rgb(image: np.ndarray) -> np.ndarray:
    return (np.asarray(image, np.float32) / 255 - RGB_MEAN) / RGB_STD


def edge_crops(photos: list[Photo], kind: str, rng: np.random.Generator, n: int, threshold: float,
               size: int = CROP) -> tuple[torch.Tensor, ...]:
    """A batch of `n` crops (rgb, z, target, weight), each set drawn equally, mostly centred on a mask edge."""
    by_set = collections.defaultdict(list)
    for photo in photos:
        by_set[photo.set].append(photo)
    groups = list(by_set.values())
    batch = []
    for _ in range(n):
        group = groups[rng.integers(len(groups))]
        photo = group[rng.integers(len(group))]
        real = kind == "real" or (kind == "mix" and rng.random() < 0.5)
        z = coarse_logits(photo.prob, threshold) if real else simulated_logits(photo.mask, rng)
        batch.append(_crop(scaled_rgb(photo.image), z, photo.mask.astype(np.uint8), rng, size))
    return tuple(torch.from_numpy(np.ascontiguousarray(np.stack(part))) for part in zip(*batch, strict=True))


def _crop(rgb, z, mask, rng, size):
    """One (rgb CHW, z 1HW, target 1HW, weight 1HW) crop, padded by reflection where the photo is smaller."""
    pad_h, pad_w = max(0, size - mask.shape[0]), max(0, size - mask.shape[1])
    if pad_h or pad_w:
        rgb = np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="reflect")
        z, mask = (np.pad(a, ((0, pad_h), (0, pad_w)), mode="reflect") for a in (z, mask))
    h, w = mask.shape
    edge_y, edge_x = np.nonzero(cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)))
    if len(edge_y) and rng.random() < EDGE_CROPS:
        k = rng.integers(len(edge_y))
        cy, cx = edge_y[k], edge_x[k]
    else:
        cy, cx = rng.integers(h), rng.integers(w)
    y0, x0 = int(np.clip(cy - size // 2, 0, h - size)), int(np.clip(cx - size // 2, 0, w - size))
    rgb, z, mask = (a[y0:y0 + size, x0:x0 + size] for a in (rgb, z, mask))
    if rng.random() < 0.5:
        rgb, z, mask = rgb[:, ::-1], z[:, ::-1], mask[:, ::-1]
    band = cv2.dilate(cv2.morphologyEx(np.ascontiguousarray(mask), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)),
                      np.ones((9, 9), np.uint8))
    return (rgb.transpose(2, 0, 1), z[None], mask[None].astype(np.float32),
            (1 + EDGE_WEIGHT * band[None]).astype(np.float32))


def train_head(photos: list[Photo], kind: str, threshold: float, *, gate: bool = False, steps: int = 1000,
               seed: int = 0, batch: int = 16, lr: float = 2e-3) -> EdgeHead:
    """A head trained for `steps` batches (Adam, weighted BCE on the refined logit) on `photos`' crops."""
    if kind not in KINDS:
        raise SeglibError(f"edge head: unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    head = EdgeHead(gate=gate)
    optimiser = torch.optim.Adam(head.parameters(), lr)
    for step in range(1, steps + 1):
        rgb, z, target, weight = edge_crops(photos, kind, rng, batch, threshold)
        loss = (F.binary_cross_entropy_with_logits(head(rgb, z), target, reduction="none") * weight).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % 200 == 0:
            logger.info(f"edge head {kind}{' gated' if gate else ''}: step {step}/{steps}, loss {loss.item():.3f}")
    return head.eval()


@torch.no_grad()
def refined_mask(head: EdgeHead | None, photo: Photo, threshold: float) -> np.ndarray:
    """The photo's mask: the model's at its threshold, or the head's (refined logit >= 0)."""
    z = coarse_logits(photo.prob, threshold)
    if head is not None:
        rgb = torch.from_numpy(scaled_rgb(photo.image).transpose(2, 0, 1).copy())[None]
        z = head(rgb, torch.from_numpy(z)[None, None])[0, 0].numpy()
    return z >= 0


def scores_by_set(photos: list[Photo], threshold: float, head: EdgeHead | None = None) -> dict:
    """Per set: its entry of a multi-domain val record (`domains.set_entry`) for the masks, with the head when
    given."""
    import pandas as pd

    rows = collections.defaultdict(list)
    for photo in photos:
        s = image_scores(refined_mask(head, photo, threshold), photo.mask)
        rows[photo.set].append({"id": photo.id, "iou": s["iou"], "boundary_iou": s["boundary_iou"]})
    return {name: set_entry(name, pd.DataFrame(v), "val") for name, v in rows.items()}


def predicted_photos(predictor, table) -> list[Photo]:
    """The photos of a split table (`data.selection.SetSplits.table`) with the predictor's probabilities."""
    from seglib.data.dataset import load_item

    photos = []
    for row in table.itertuples(index=False):
        image, mask = load_item(row)
        prob = predictor.predict_proba(image).astype(np.float16)
        photos.append(Photo(str(row.id), str(row.dataset), image, mask.astype(np.uint8), prob))
    return photos


@dataclass
class StudyPhotos:
    """What the study reads: the photos the checkpoint trained on and every registered set's val photos, with
    its probabilities; the sets it trained on and the registered sets not on this machine."""

    train: list[Photo]
    val: list[Photo]
    trained_on: list[str]
    not_present: list[str]


def study_photos(checkpoint: Path, predictor) -> StudyPhotos:
    """The checkpoint's training photos (by its record) and every registered set's val photos, predicted."""
    from seglib.checkpoint import load_checkpoint
    from seglib.data.registry import present_sets, set_status
    from seglib.data.selection import open_sets, trained_sets

    record = load_checkpoint(checkpoint).get("data_split") or {}
    trained = trained_sets(record)
    train_ids = {str(i) for i in record.get("train_ids", [])}
    if not train_ids:
        raise SeglibError(f"{display_path(checkpoint)}: records no training photos; the head learns only from those")
    train = open_sets(",".join(trained)).table("train")
    train = train[train["id"].astype(str).isin(train_ids)]
    present = present_sets()
    val = [open_sets(name).table("val") for name in present]
    logger.info(f"edge head: predicting {len(train)} training photos of {', '.join(trained)} and "
                f"{sum(map(len, val))} val photos of {', '.join(present)}")
    return StudyPhotos(predicted_photos(predictor, train), [p for t in val for p in predicted_photos(predictor, t)],
                       list(trained), [n for n in set_status() if n not in present])


def variant_name(kind: str, gate: bool) -> str:
    return f"edge-head-{kind}{'-gate' if gate else ''}"


def parse_variant(text: str) -> tuple[str, bool]:
    """'mix-gate' -> ('mix', True); 'sim' -> ('sim', False)."""
    kind, _, rest = text.partition("-")
    if kind not in KINDS or rest not in ("", "gate"):
        raise SeglibError(f"edge head variant {text!r}: expected KIND or KIND-gate, KIND one of {', '.join(KINDS)}")
    return kind, rest == "gate"


def edge_head_study(checkpoint: str | Path, name: str, variants: list[str], out_dir: str | Path, *,
                    steps: int = 1000, seed: int = 0, device: str = "auto") -> list[dict]:
    """(1) The checkpoint's training and val photos predicted once, with its val threshold and TTA; (2) the model
    without a head scored on every set's val split; (3) per variant, a head trained and scored, its
    multi_domain_val.json written to `out_dir/<variant>/`. Returns the records, the model without a head first."""
    from seglib.infra.devices import resolve_device
    from seglib.predict.predictor import Predictor

    checkpoint = Path(checkpoint)
    predictor = Predictor.from_checkpoint(checkpoint, device=resolve_device(device))
    photos = study_photos(checkpoint, predictor)
    threshold = float(predictor.threshold)
    base = _record(name, checkpoint, predictor, photos, scores_by_set(photos.val, threshold), {})
    records = [base]
    for text in variants:
        kind, gate = parse_variant(text)
        started = time.perf_counter()
        head = train_head(photos.train, kind, threshold, gate=gate, steps=steps, seed=seed)
        facts = {"kind": kind, "gate": gate, "steps": steps, "seed": seed, "crop": CROP,
                 "weights": sum(p.numel() for p in head.parameters()), "train_photos": len(photos.train),
                 "train_minutes": round((time.perf_counter() - started) / 60, 2)}
        record = _record(f"{name} @{variant_name(kind, gate)}", checkpoint, predictor, photos,
                         scores_by_set(photos.val, threshold, head), facts)
        folder = Path(out_dir) / variant_name(kind, gate)
        folder.mkdir(parents=True, exist_ok=True)
        write_val_record(folder / MULTI_DOMAIN, record)
        records.append(record)
        logger.info(f"{record['model']}: multi-domain val {record['mean_iou']:.4f} (boundary "
                    f"{record['mean_boundary_iou']:.4f}) vs {base['mean_iou']:.4f} ({base['mean_boundary_iou']:.4f})")
    return records


def _record(model: str, checkpoint: Path, predictor, photos: StudyPhotos, sets: dict, head: dict) -> dict:
    """A multi-domain val record as `studies.domains.multi_domain_val` writes one, plus the head's facts."""
    protocol = {"checkpoint": display_path(checkpoint), "checkpoint_epoch": predictor.checkpoint.get("epoch"),
                "tta": bool(predictor.tta), "threshold": float(predictor.threshold)}
    return {**val_record(model, protocol, photos.trained_on, sets, photos.not_present,
                         levers=model.partition(" @")[2]), "edge_head": head}
