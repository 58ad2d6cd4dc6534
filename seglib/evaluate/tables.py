"""What an evaluation returns (`EvalResult`) and its headline table, built once as a DataFrame."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from seglib.infra.errors import SeglibError
from seglib.runs import METRICS, Run

HEADLINE_COLUMNS = ["mean_iou", "ci95_low", "ci95_high", "median_iou", "pooled_iou", "mean_dice",
                    "mean_boundary_iou"]


@dataclass
class EvalResult:
    """What one `evaluate_run` call scored and wrote."""

    split: str
    out_dir: Path  # the split's folder, e.g. runs/NAME/eval/test
    metrics: dict
    per_image: pd.DataFrame
    sweep: pd.DataFrame | None = None  # val only
    paths: list[Path] = field(default_factory=list)
    val_result: EvalResult | None = None  # set when val had to be evaluated first (for test's threshold)

    @property
    def threshold(self) -> float:
        return float(self.metrics["threshold"])

    def table(self) -> pd.DataFrame:
        """Model and baselines side by side (the same frame as `headline_table`)."""
        return headline_from_metrics(self.metrics)


def load_metrics(run_or_dir, split: str = "test") -> dict:
    """metrics.json of a run name, run folder, or eval folder (one that holds <split>/metrics.json)."""
    path = Path(run_or_dir) if isinstance(run_or_dir, Path) else Run.resolve(run_or_dir).dir
    candidates = [Run(path).metrics_file(split), path / split / METRICS, path / METRICS]
    for c in candidates:
        if c.is_file():
            return json.loads(c.read_text())
    raise SeglibError(f"{candidates[0]}: not evaluated yet (run `seglib evaluate --run {path.name} --split {split}`)")


def headline_from_metrics(metrics: dict) -> pd.DataFrame:
    def row(d: dict) -> dict:
        low, high = d["mean_iou_ci95"]
        return {"mean_iou": d["mean_iou"], "ci95_low": low, "ci95_high": high, "median_iou": d["median_iou"],
                "pooled_iou": d["pooled_iou"], "mean_dice": d["mean_dice"],
                "mean_boundary_iou": d["mean_boundary_iou"]}

    rows = {"model": row(metrics)}
    for name, scores in metrics.get("baselines", {}).items():
        rows[name] = row(scores)
    table = pd.DataFrame.from_dict(rows, orient="index", columns=HEADLINE_COLUMNS)
    table.index.name = "method"
    return table


def headline_table(run_dir, split: str = "test") -> pd.DataFrame:
    """Rows: model + baselines; columns mean_iou, ci95_low, ci95_high, median_iou, pooled_iou, mean_dice,
    mean_boundary_iou. Reads `<run>/eval/<split>/metrics.json` (a run name, run folder or eval folder)."""
    return headline_from_metrics(load_metrics(run_dir, split))


def format_table(table: pd.DataFrame) -> str:
    lines = [f"{'':18s} {'mean IoU':>8s} {'95% CI':>15s} {'median':>7s} {'pooled':>7s} {'Dice':>6s} "
             f"{'bIoU':>6s}"]
    for name, r in table.iterrows():
        lines.append(f"{name:18s} {r.mean_iou:8.4f} [{r.ci95_low:.3f}, {r.ci95_high:.3f}] {r.median_iou:7.4f} "
                     f"{r.pooled_iou:7.4f} {r.mean_dice:6.4f} {r.mean_boundary_iou:6.4f}")
    return "\n".join(lines)
