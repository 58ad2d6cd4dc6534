"""The learned edge-refinement head study (seglib.studies.edge_head, `seglib edge-head`)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from seglib.infra.errors import SeglibError
from seglib.metrics import boundary_iou
from seglib.studies.edge_head import (
    EdgeHead,
    Photo,
    coarse_logits,
    edge_crops,
    parse_variant,
    scores_by_set,
    simulated_logits,
    study_photos,
    train_head,
    variant_name,
)
from tests.conftest import save_tiny_checkpoint


def figure(h: int = 160, w: int = 128, grey: int = 200, shift: int = 0, set_name: str = "a", pid: str = "0"):
    """A photo whose figure (a rounded box) is where its mask is; the model's probabilities are the mask moved
    `shift` px right and blurred."""
    mask = np.zeros((h, w), np.uint8)
    cv2.rectangle(mask, (30, 25), (w - 35, h - 20), 1, -1)
    image = np.where(mask[..., None] > 0, grey, 255 - grey).astype(np.uint8).repeat(3, 2)
    moved = np.roll(mask, shift, axis=1).astype(np.float32)
    prob = cv2.GaussianBlur(moved, (0, 0), 2.0).astype(np.float16)
    return Photo(pid, set_name, image, mask, prob)


def test_the_head_starts_as_the_identity():
    head = EdgeHead()
    z = torch.randn(2, 1, 24, 20) * 4
    assert torch.equal(head(torch.randn(2, 3, 24, 20), z), z)


def test_the_gate_keeps_sure_pixels_and_lets_the_edge_move():
    z = torch.tensor([-8.0, 0.0, 8.0]).reshape(1, 1, 1, 3)
    rgb = torch.zeros(1, 3, 1, 3)
    for gate in (False, True):
        head = EdgeHead(gate=gate)
        torch.nn.init.constant_(head.out.bias, 5.0)  # a correction of +5 everywhere
        out = head(rgb, z).flatten()
        if gate:
            assert abs(out[0] + 8) < 0.01 and abs(out[2] - 8) < 0.01 and out[1] > 4.9
        else:
            assert torch.allclose(out, z.flatten() + 5)


def test_coarse_logits_are_zero_at_the_threshold_and_clipped():
    z = coarse_logits(np.array([0.3, 0.31, 0.29, 1.0, 0.0]), 0.3)
    assert abs(z[0]) < 1e-5 and z[1] > 0 > z[2] and z[3] == 8.0 and z[4] == -8.0


def test_simulated_logits_move_the_edge_only_near_it():
    mask = figure().mask
    inside = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    outside = cv2.distanceTransform(1 - mask, cv2.DIST_L2, 3)
    far = (inside > 20) | (outside > 20)
    moved = 0
    for seed in range(10):
        z = simulated_logits(mask, np.random.default_rng(seed))
        assert ((z >= 0) == mask.astype(bool))[far].all(), seed
        moved += int(((z >= 0) != mask.astype(bool)).sum())
    assert moved > 100  # it does coarsen the edge


def test_edge_crops_draw_each_set_equally_and_weigh_the_edge():
    photos = [figure(grey=230, set_name="bright", pid="b")] + \
             [figure(grey=20, set_name="dark", pid=str(i)) for i in range(9)]  # 1 photo against 9
    rgb, z, target, weight = edge_crops(photos, "mix", np.random.default_rng(0), 200, 0.5, size=64)
    assert rgb.shape == (200, 3, 64, 64) and z.shape == target.shape == weight.shape == (200, 1, 64, 64)
    bright_figure = (rgb[:, 0] * target[:, 0]).sum((1, 2)) / target[:, 0].sum((1, 2)).clamp(min=1) > 0
    assert 0.38 < bright_figure.float().mean() < 0.62  # each set half the crops, not a tenth
    assert set(torch.unique(weight).tolist()) == {1.0, 5.0}
    assert (target.flatten(1).max(1).values > target.flatten(1).min(1).values).float().mean() > 0.7  # edges


def test_the_head_learns_to_put_a_shifted_edge_back_on_the_photo_s_edge():
    photos = [figure(shift=4, pid=str(i), grey=g) for i, g in enumerate((200, 60, 170, 90))]
    before = np.mean([boundary_iou(coarse_logits(p.prob, 0.5) >= 0, p.mask, 0.01) for p in photos])
    head = train_head(photos, "real", 0.5, steps=60, batch=8, lr=5e-3)
    from seglib.studies.edge_head import refined_mask

    after = np.mean([boundary_iou(refined_mask(head, p, 0.5), p.mask, 0.01) for p in photos])
    assert after > before + 0.1, (before, after)
    scores = scores_by_set(photos, 0.5, head)
    assert list(scores) == ["a"] and scores["a"]["n_images"] == 4
    assert sorted(scores["a"]["iou_by_photo"]) == ["0", "1", "2", "3"]  # each photo's IoU: a paired CI is possible


def test_variants_are_named_and_a_wrong_one_is_refused():
    assert parse_variant("mix-gate") == ("mix", True) and parse_variant("sim") == ("sim", False)
    assert variant_name("real", True) == "edge-head-real-gate"
    for bad in ("blur", "mix-gated", "gate"):
        with pytest.raises(SeglibError, match="expected KIND"):
            parse_variant(bad)
    with pytest.raises(SeglibError, match="unknown kind"):
        train_head([figure()], "blur", 0.5, steps=1)


def test_a_checkpoint_without_its_training_photos_is_refused(tmp_path):
    path = save_tiny_checkpoint(tmp_path / "best.pt")
    with pytest.raises(SeglibError, match="records no training photos"):
        study_photos(path, predictor=None)


def test_the_command_refuses_a_missing_checkpoint_and_a_wrong_variant_in_one_line(tmp_path, capsys):
    from seglib.cli import main

    assert main(["edge-head", "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert capsys.readouterr().err.strip() == f"seglib: error: {tmp_path / 'none.pt'}: no such checkpoint"
    path = save_tiny_checkpoint(tmp_path / "best.pt")
    assert main(["edge-head", "--checkpoint", str(path), "--variants", "sim,blur"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'blur'" in err


def test_the_command_prints_each_variant_s_decision_on_boundary_iou(tmp_path, capsys, monkeypatch):
    """The rule decides a lever about edges on boundary IoU: +0.006 adopts, a higher mean IoU alone does not."""
    from seglib.cli import main
    from seglib.studies import edge_head

    def record(model, levers, iou, biou):
        return {"model": model, "levers": levers, "mean_iou": iou, "mean_boundary_iou": biou,
                "sets": {"human-seg": {"mean_iou": iou, "mean_boundary_iou": biou}}}

    def study(checkpoint, name, variants, out, **_):
        assert variants == ["sim", "mix-gate"] and out == tmp_path / "out"
        return [record(name, "", 0.90, 0.68), record(f"{name} @edge-head-sim", "edge-head-sim", 0.91, 0.682),
                record(f"{name} @edge-head-mix-gate", "edge-head-mix-gate", 0.899, 0.686)]

    monkeypatch.setattr(edge_head, "edge_head_study", study)
    path = save_tiny_checkpoint(tmp_path / "best.pt")
    assert main(["edge-head", "--checkpoint", str(path), "--variants", "sim,mix-gate", "--name", "m",
                 "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "edge-head-sim: boundary IoU +0.0020 (mean IoU +0.0100): not adopted" in out
    assert "edge-head-mix-gate: boundary IoU +0.0060 (mean IoU -0.0010): adopted" in out
    assert f"wrote {tmp_path / 'out' / 'edge-head-sim' / 'multi_domain_val.json'}" in out


def test_a_second_study_into_the_same_folder_is_refused_at_once(tmp_path, capsys, monkeypatch):
    from seglib.cli import main
    from seglib.infra import locks
    from seglib.studies import edge_head

    monkeypatch.setattr(edge_head, "edge_head_study", lambda *a, **k: pytest.fail("the study ran"))
    path = save_tiny_checkpoint(tmp_path / "best.pt")
    out = tmp_path / "out"
    with locks.exclusive(locks.output_folder(out), str(out)):  # another `seglib edge-head` writing there
        assert main(["edge-head", "--checkpoint", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"seglib: error: {out}: in use by pid")
