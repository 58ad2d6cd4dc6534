"""The cross-data-set study: what each data set teaches about the others.

Rows are what a model trained on (one registered set, several, or nothing: MediaPipe off the shelf), columns the
test split of each registered set; each cell is the mean IoU over that split's photos with its 95% bootstrap CI,
and the model minus MediaPipe photo by photo on the same photos. A cell is in-domain where the model trained on
that set (its checkpoint's record decides), cross-data-set otherwise. `seglib crossdata` gathers the
`seglib evaluate --dataset NAME` results of the models it is given into `reports/crossdata/` (committed: the
documentation's numbers are read from there), with MediaPipe's scores taken from `reports/anchors/`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from seglib.infra import paths
from seglib.infra.errors import SeglibError
from seglib.infra.io import write_json_atomic, write_text_atomic
from seglib.infra.paths import display_path
from seglib.models.model_registry import MEDIAPIPE_SELFIE
from seglib.runs import METRICS, PER_IMAGE

ANCHOR = "MediaPipe off the shelf"


def study_dir() -> Path:
    """Where `seglib crossdata` writes the study (reports/crossdata/, moved by $SEGLIB_REPORTS_DIR)."""
    return paths.reports_dir() / "crossdata"


def study_markdown(root: Path | None = None) -> str:
    """The committed study's table (reports/crossdata/table.md of the project), or a line saying it is not there."""
    path = (root if root is not None else paths.PROJECT_ROOT) / "reports" / "crossdata" / "table.md"
    if not path.is_file():
        return "No cross-data-set study committed yet (`seglib crossdata`, docs/data.md).\n"
    return path.read_text(encoding="utf-8")


def trained_label(metrics: dict) -> str:
    """A row's name: the sets a model trained on, as its evaluation recorded them from the checkpoint."""
    trained = metrics.get("trained_on")
    if not trained:
        raise SeglibError(f"{metrics.get('checkpoint', 'a result')}: scored before seglib recorded what a model "
                          "trained on; score it again with --overwrite")
    return " + ".join(trained)


def gather(eval_dirs: list[Path], sets: list[str], out: Path | None = None) -> pd.DataFrame:
    """Copy each model's `<set>-test` results (metrics.json, per_image.csv) into the study folder, one sub-folder
    per row, and write the table (`table.csv`, `table.md`); a missing result is an error naming its folder."""
    from seglib.infra.locks import exclusive

    out = out if out is not None else study_dir()
    with exclusive(out, f"cross-data-set study {display_path(out)}"):  # one `seglib crossdata` writes it at a time
        return _gather(eval_dirs, sets, out)


def _gather(eval_dirs: list[Path], sets: list[str], out: Path) -> pd.DataFrame:
    # 1. every result read first: a missing one, or two models for one row, and nothing is written
    results = {}  # row label -> [(set name, result folder, metrics)]
    given: dict[str, Path] = {}  # row label -> the model folder it came from
    for eval_dir in eval_dirs:
        for name in sets:
            found = Path(eval_dir) / f"{name}-test"
            if not (found / METRICS).is_file():
                raise SeglibError(f"{display_path(found)}: no result (score it with `seglib evaluate --run RUN "
                                  f"--dataset {name} --tta`)")
            metrics = json.loads((found / METRICS).read_text())
            label = trained_label(metrics)
            first = given.setdefault(label, Path(eval_dir))
            if first != Path(eval_dir):
                raise SeglibError(f"{display_path(eval_dir)} and {display_path(first)}: both models trained on "
                                  f"{label}, and the table has one row per training data; give one of them")
            results.setdefault(label, []).append((name, found, metrics))
    # 2. each row's results copied into the study, then the table
    for label, rows in results.items():
        for name, found, metrics in rows:
            row = out / _slug(label) / f"{name}-test"
            row.mkdir(parents=True, exist_ok=True)
            write_text_atomic(row / PER_IMAGE, (found / PER_IMAGE).read_text(encoding="utf-8"))
            write_json_atomic(row / METRICS, metrics | {"trained_on": label, "source": display_path(found)})
    table = cross_table(out, sets)
    write_text_atomic(out / "table.csv", table.to_csv(index=False, lineterminator="\n"))
    write_text_atomic(out / "table.md", markdown(table, sets))
    return table


def _slug(label: str) -> str:
    return label.replace(" + ", "+")


def cross_table(folder: Path, sets: list[str], anchors: Path | None = None, n_boot: int = 2000) -> pd.DataFrame:
    """One row per (trained on, test split): n, mean IoU, its CI, and minus MediaPipe photo by photo."""
    anchors = anchors if anchors is not None else paths.reports_dir() / "anchors" / MEDIAPIPE_SELFIE
    rows = []
    for model_dir in sorted(p for p in Path(folder).iterdir() if p.is_dir()):
        for name in sets:
            cell = model_dir / f"{name}-test"
            if not (cell / PER_IMAGE).is_file():
                continue
            metrics = json.loads((cell / METRICS).read_text())
            ours = pd.read_csv(cell / PER_IMAGE, usecols=["id", "iou"], dtype={"id": str})
            rows.append(_cell(metrics["trained_on"], name, ours, _anchor_scores(anchors, name), n_boot,
                              in_domain=name in metrics["trained_on"].split(" + "))
                        | {"model": metrics.get("checkpoint", "")})
    for name in sets:  # MediaPipe's own row, on the same photos as the models' cells
        ids = next((pd.read_csv(c / PER_IMAGE, usecols=["id"], dtype={"id": str})["id"]
                    for c in sorted(Path(folder).glob(f"*/{name}-test")) if (c / PER_IMAGE).is_file()), None)
        theirs = _anchor_scores(anchors, name)
        if ids is not None and theirs is not None and set(ids) <= set(theirs["id"]):
            rows.append(_cell(ANCHOR, name, theirs[theirs["id"].isin(set(ids))], None, n_boot, in_domain=False))
    return pd.DataFrame(rows)


def anchor_folder(name: str) -> str:
    """Where the anchor's per-photo scores of set `name` lie under reports/anchors/mediapipe-selfie/: the built-in
    set's as its test split (`seglib anchor`), any other set's under its name (`seglib anchor --external NAME`)."""
    from seglib.data.descriptions import BUILTIN

    return "test" if name == BUILTIN else name


def _anchor_scores(anchors: Path, name: str) -> pd.DataFrame | None:
    path = anchors / anchor_folder(name) / PER_IMAGE
    return pd.read_csv(path, usecols=["id", "iou"], dtype={"id": str}) if path.is_file() else None


def _cell(trained_on: str, name: str, ours: pd.DataFrame, anchor: pd.DataFrame | None, n_boot: int, *,
          in_domain: bool) -> dict:
    from seglib.studies.generality import compare_cell  # this table is the generality table's special case

    cell = compare_cell(ours, anchor, n_boot)
    row = {"trained_on": trained_on, "test_split": name, "in_domain": in_domain,
           **{k: cell[k] for k in ("n_images", "mean_iou", "ci_low", "ci_high")}}
    if "minus_anchor" in cell:
        row |= {"minus_mediapipe": cell["minus_anchor"], **{k: cell[k] for k in ("diff_low", "diff_high",
                                                                                 "better_photos")}}
    return row


def markdown(table: pd.DataFrame, sets: list[str]) -> str:
    """The table as rows (trained on) by columns (test splits); in-domain cells in bold."""
    if table.empty:
        return "no cross-data-set result yet\n"
    header = "| trained on | " + " | ".join(f"{s} test split" for s in sets) + " |"
    lines = [header, "|---|" + "---|" * len(sets)]
    order = list(dict.fromkeys([*(t for t in table["trained_on"] if t != ANCHOR), ANCHOR]))
    for trained_on in order:
        cells = []
        for name in sets:
            found = table[(table["trained_on"] == trained_on) & (table["test_split"] == name)]
            cells.append(_cell_text(found.iloc[0]) if len(found) else "—")
        lines.append(f"| {trained_on} | " + " | ".join(cells) + " |")
    models = table.dropna(subset=["model"]) if "model" in table else table.iloc[:0]
    sources = dict(zip(models["trained_on"], models["model"], strict=True))
    if any(sources.values()):
        lines += ["", "Models: " + "; ".join(f"{t}: `{m}`" for t, m in sources.items() if m) + "."]
    return "\n".join(lines) + "\n"


def _cell_text(row: pd.Series) -> str:
    text = f"{row['mean_iou']:.3f} ({row['ci_low']:.3f}–{row['ci_high']:.3f}), {row['n_images']} photos"
    if row["in_domain"]:
        text = f"**{text}**"
    if "minus_mediapipe" in row and not pd.isna(row.get("minus_mediapipe", np.nan)):
        text += (f"; vs MediaPipe {row['minus_mediapipe']:+.3f} ({row['diff_low']:+.3f} to {row['diff_high']:+.3f}), "
                 f"better on {int(row['better_photos'])}")
    return text


def readme_block(root: Path) -> str:
    """The README's lines on the study: its table, under one sentence."""
    return ("What each data set teaches about the other, each model on each set's test split (`seglib crossdata`; "
            "in-domain in bold):\n\n" + study_markdown(root).rstrip())


def results_section(root: Path) -> str:
    """docs/results.md's section on the study."""
    from seglib.data.descriptions import external_check_set

    check = external_check_set()
    return ("## Across data sets\nThe `cpu` recipe trained on this data set, on "
            f"{check.title or check.name}'s training split and on both, and MediaPipe off the shelf, each scored on "
            "each registered set's **test split** with flip TTA and its own val threshold (in-domain cells in "
            "bold). The difference to MediaPipe is photo by photo on the same photos, with a 95% bootstrap CI. Source: `reports/crossdata/` (`seglib crossdata`; "
            "how: [data.md](data.md)).\n\n" + study_markdown(root).rstrip())
