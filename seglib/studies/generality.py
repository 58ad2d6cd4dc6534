"""The generality table: every candidate model and both MediaPipe anchors on every registered set's test split.

Rows: the candidates listed in reports/generality/models.yaml (name, checkpoint, what it is, TTA) and, off the
shelf, MediaPipe's selfie segmenter and Pose's person mask (their per-photo scores in reports/anchors/, `seglib
anchor`); columns: the test split of each registered set. A cell holds the mean IoU with its 95% bootstrap CI, the
mean boundary IoU, and the row minus the best anchor on that split (the anchor with the higher mean IoU there)
photo by photo on the same photos: the mean difference with its paired bootstrap CI and the photos each does better
on. A candidate listed with `seed_of` is another candidate's recipe run again with another seed: scored the same
way, it is no row but a line under the table, the recipe's spread (nothing is chosen with it). A model's cell is
in-domain (bold) where its checkpoint's record of training photos includes the set. A set
not on this machine reads "not fetched" unless cells were committed for it; a model whose checkpoint is not here
keeps the cells committed for it.

`seglib generality` scores each candidate whose checkpoint is here on each present set's test split by the
model's own protocol (the threshold chosen on its own val split, its TTA setting; `evaluate.load_or_evaluate`,
reused when saved), into reports/generality/<name>/, and writes table.csv and table.md there; all of it is
committed, and `seglib docs` writes the README's headline table and docs/results.md from it. The cross-data-set
table (`studies.crossdata`) is its special case and computes its cells with `compare_cell`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from seglib.infra import paths
from seglib.infra.errors import ConfigError, SeglibError
from seglib.infra.paths import display_path
from seglib.metrics import bootstrap_ci
from seglib.runs import METRICS, PER_IMAGE
from seglib.studies.anchors import MODELS as ANCHORS
from seglib.studies.anchors import NO_POSE, POSE, SELFIE, TITLES, anchor_scores
from seglib.studies.candidates import MODELS_FILE, STUDY, Candidate, default_candidate, read_models
from seglib.studies.domains import set_status, split_folder

logger = logging.getLogger(__name__)

TABLE_CSV, TABLE_MD = "table.csv", "table.md"
MODEL, SEED, ANCHOR = "model", "seed", "anchor"  # the kinds of row (SEED: a recipe's run with another seed)
SCORED, NO_CHECKPOINT, NOT_SCORED = "scored", "checkpoint not here", "not scored"
FLOOR_SET, FLOOR_MEAN_IOU, FLOOR_BOUNDARY_IOU = "human-seg", 0.905, 0.75  # issue #37: the default keeps these
SHORT = {SELFIE: "MediaPipe selfie", POSE: "MediaPipe Pose"}  # how a cell names the anchor it is compared with
COLUMNS = ["row", "kind", "seed_of", "about", "checkpoint", "set", "status", "in_domain", "n_images", "mean_iou",
           "ci_low", "ci_high", "mean_boundary_iou", "best_anchor", "minus_best_anchor", "diff_low", "diff_high",
           "better_photos", "worse_photos", NO_POSE]


def study_dir() -> Path:
    """Where `seglib generality` writes (reports/generality/, moved by $SEGLIB_REPORTS_DIR)."""
    return paths.reports_dir() / STUDY


def score_candidates(candidates: list[Candidate], sets: list[str], out: Path, *, progress: bool = False) -> None:
    """Each candidate whose checkpoint is here on each set's test split (saved scores reused); a model or a cell
    that cannot be scored is logged and left out of the table, the others go on."""
    from seglib.data.selection import split_test_pairs

    for candidate in candidates:
        if not candidate.path.is_file():
            logger.info(f"{candidate.name}: {display_path(candidate.path)} is not here; its committed cells are kept")
            continue
        model = candidate.scored(out)
        for name in sets:
            try:
                model.evaluate(split_test_pairs(name), progress=progress)
            except SeglibError as exc:
                logger.warning(f"warning: {candidate.name} on {name}'s test split not scored: {exc}")


def compare_cell(ours: pd.DataFrame, anchor: pd.DataFrame | None, n_boot: int = 2000) -> dict:
    """A row's cell: n, mean IoU and its 95% CI, mean boundary IoU (where scored), and, where `anchor` scored every
    photo of `ours` (by id), ours minus it photo by photo with the 95% CI and the photos each does better on."""
    ious = ours["iou"].to_numpy(float)
    low, high = bootstrap_ci(ious, n_boot=n_boot)
    cell = {"n_images": len(ious), "mean_iou": float(ious.mean()), "ci_low": low, "ci_high": high}
    if "boundary_iou" in ours:
        cell["mean_boundary_iou"] = float(ours["boundary_iou"].mean())
    if anchor is None:
        return cell
    both = ours[["id", "iou"]].merge(anchor[["id", "iou"]], on="id", suffixes=("", "_anchor"))
    if len(both) == len(ours) and len(both):
        diff = (both["iou"] - both["iou_anchor"]).to_numpy(float)
        d_low, d_high = bootstrap_ci(diff, n_boot=n_boot)
        cell |= {"minus_anchor": float(diff.mean()), "diff_low": d_low, "diff_high": d_high,
                 "better_photos": int((diff > 0).sum()), "worse_photos": int((diff < 0).sum())}
    return cell


def _saved(folder: Path) -> tuple[pd.DataFrame, dict] | None:
    if not (folder / METRICS).is_file() or not (folder / PER_IMAGE).is_file():
        return None
    return pd.read_csv(folder / PER_IMAGE, dtype={"id": str}), json.loads((folder / METRICS).read_text())


def _split_ids(name: str, why: str, cells: list) -> set[str] | None:
    """The ids of set `name`'s test split: its split file when the set is here, else a committed cell's."""
    if not why:
        from seglib.data.selection import open_sets

        return set(open_sets(name, during="its test split was being read").table("test")["id"].astype(str))
    return next((set(per_image["id"]) for per_image, _ in (c for c in cells if c is not None)), None)


def _anchor_on(model: str, name: str, ids: set[str] | None, anchors: Path | None):
    """(per-photo scores on the split's photos, metrics of the folder they came from) of an anchor, or None."""
    found = anchor_scores(model, name, "test", anchors)
    if found is None:
        return None
    scores, metrics = found
    own = metrics.get("split") == split_folder(name, "test")
    if ids is None:
        return (scores, metrics) if own else None
    kept = scores[scores["id"].isin(ids)]
    return (kept, metrics) if len(kept) == len(ids) else None


def build_table(candidates: list[Candidate], status: dict[str, str], out: Path, anchors: Path | None = None,
                n_boot: int = 2000) -> pd.DataFrame:
    """The table's rows (COLUMNS), one per (row, set): candidates' cells from `out`/NAME/SET-test/, anchors' from
    `anchors` (reports/anchors by default), each compared with the best anchor on that set's test split; the sets
    on this machine first. A candidate with neither its checkpoint here nor a saved cell has no row."""
    rows = []
    candidates = [c for c in candidates if c.path.is_file() or any((Path(out) / c.name).glob(f"*-test/{METRICS}"))]
    for name, why in sorted(status.items(), key=lambda item: bool(item[1])):
        cells = {c.name: _saved(Path(out) / c.name / f"{name}-test") for c in candidates}
        ids = _split_ids(name, why, list(cells.values()))
        anchor_cells = {m: _anchor_on(m, name, ids, anchors) for m in ANCHORS}
        scored = [m for m in ANCHORS if anchor_cells[m] is not None]
        best = max(scored, key=lambda m: anchor_cells[m][0]["iou"].mean(), default=None)
        best_scores = anchor_cells[best][0] if best else None
        for c in candidates:
            base = {"row": c.name, "kind": SEED if c.seed_of else MODEL, "seed_of": c.seed_of, "about": c.about,
                    "checkpoint": c.checkpoint, "set": name, "best_anchor": best or ""}
            if cells[c.name] is None:
                reason = why or (NO_CHECKPOINT if not c.path.is_file() else NOT_SCORED)
                rows.append(base | {"status": reason})
                continue
            per_image, metrics = cells[c.name]
            rows.append(base | {"status": SCORED, "in_domain": name in (metrics.get("trained_on") or [])}
                        | _renamed(compare_cell(per_image, best_scores, n_boot)))
        for m in ANCHORS:
            base = {"row": TITLES[m], "kind": ANCHOR, "about": "off the shelf", "checkpoint": "", "set": name,
                    "best_anchor": best or ""}
            if anchor_cells[m] is None:
                rows.append(base | {"status": why or NOT_SCORED})
                continue
            scores, metrics = anchor_cells[m]
            own = metrics.get("split") == split_folder(name, "test")
            rows.append(base | {"status": SCORED, "in_domain": False, NO_POSE: metrics.get(NO_POSE) if own else None}
                        | _renamed(compare_cell(scores, None if m == best else best_scores, n_boot)))
    return pd.DataFrame(rows).reindex(columns=COLUMNS)


def _renamed(cell: dict) -> dict:
    return {("minus_best_anchor" if k == "minus_anchor" else k): v for k, v in cell.items()}


def set_titles(names) -> dict[str, str]:
    """How the table names each set: its description's title, else its name."""
    from seglib.data.descriptions import registered

    sets = registered(skip_unreadable=True)
    return {n: (sets[n].title or n) if n in sets else n for n in names}


def markdown(table: pd.DataFrame, titles: dict[str, str] | None = None) -> str:
    """Rows (candidates, then the anchors) by columns (each set's test split); under it, the spread of each recipe
    that was run again with other seeds (`seed_of` entries)."""
    if table.empty:
        return "no generality result yet\n"
    seeds = table[table["kind"] == SEED]
    table = table[table["kind"] != SEED]
    sets = list(dict.fromkeys(table["set"]))
    titles = titles or {s: s for s in sets}
    header = ["model"]
    for s in sets:
        n = table.loc[(table["set"] == s) & (table["status"] == SCORED), "n_images"]
        header.append(f"{titles.get(s, s)} test split" + (f", {int(n.iloc[0])} photos" if len(n) else ""))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in dict.fromkeys(table["row"]):
        found = table[table["row"] == row]
        first = found.iloc[0]
        label = f"`{row}`: {first['about']}" if first["kind"] == MODEL else f"{row} (off the shelf)"
        cells = [_cell_text(found[found["set"] == s].iloc[0]) if (found["set"] == s).any() else "—" for s in sets]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    models = table[table["kind"] == MODEL].drop_duplicates("row")
    lines += ["", "Checkpoints: " + "; ".join(f"`{r['row']}`: `{r['checkpoint']}`" for _, r in models.iterrows())
              + "."] if len(models) else []
    scored_seeds = seeds[seeds["status"] == SCORED]
    lines += [seed_spread(table, scored_seeds, recipe, titles) for recipe in dict.fromkeys(scored_seeds["seed_of"])]
    return "\n".join(lines) + "\n"


def seed_spread(table: pd.DataFrame, seeds: pd.DataFrame, recipe: str, titles: dict[str, str]) -> str:
    """One line: the runs of `recipe`'s recipe with other seeds, and on each set's test split their mean IoUs and
    boundary IoUs beside the recipe's own row ('...: SET A and B, edges C and D (`recipe`: E, edges F); ...')."""
    runs = seeds[seeds["seed_of"] == recipe]
    names = list(dict.fromkeys(runs["row"]))
    each = []
    for name in dict.fromkeys(runs["set"]):
        theirs = runs[runs["set"] == name].set_index("row").reindex(names).dropna(subset=["mean_iou"])
        own = table[(table["row"] == recipe) & (table["set"] == name) & (table["status"] == SCORED)]
        text = (f"{titles.get(name, name)} {' and '.join(f'{v:.3f}' for v in theirs['mean_iou'])}, edges "
                f"{' and '.join(f'{v:.3f}' for v in theirs['mean_boundary_iou'])}")
        if len(own):
            text += f" (`{recipe}`: {own.iloc[0]['mean_iou']:.3f}, edges {own.iloc[0]['mean_boundary_iou']:.3f})"
        each.append(text)
    listed = ", ".join(f"`{n}`" for n in names)
    return (f"\nRuns of `{recipe}`'s recipe with other seeds, nothing else changed ({listed}; nothing is chosen with "
            f"them), on each test split: {'; '.join(each)}.")


def _cell_text(row: pd.Series) -> str:
    if row["status"] != SCORED:
        return str(row["status"])
    text = f"{row['mean_iou']:.3f} ({row['ci_low']:.3f}–{row['ci_high']:.3f})"
    text = f"**{text}**" if not pd.isna(row["in_domain"]) and bool(row["in_domain"]) else text
    if not pd.isna(row.get("mean_boundary_iou")):
        text += f", edges {row['mean_boundary_iou']:.3f}"
    best = row["best_anchor"]
    if row["kind"] == ANCHOR and row["row"] == TITLES.get(best):
        text += "; best anchor"
    elif not pd.isna(row.get("minus_best_anchor")) and best:
        text += (f"; vs {SHORT[best]} {row['minus_best_anchor']:+.3f} ({row['diff_low']:+.3f} to "
                 f"{row['diff_high']:+.3f}), better on {int(row['better_photos'])} of {int(row['n_images'])}")
    if not pd.isna(row.get(NO_POSE)) and row[NO_POSE]:
        text += f"; no person found on {int(row[NO_POSE])}"
    return text


def run_study(models: Path | None = None, out: Path | None = None, anchors: Path | None = None, *,
              score: bool = True, progress: bool = False, n_boot: int = 2000) -> pd.DataFrame:
    """`seglib generality`: score the candidates of `models` (models.yaml) that are here on every present set's
    test split (unless `score` is False), then write the table (table.csv, table.md) into `out`."""
    from seglib.infra.io import write_text_atomic
    from seglib.infra.locks import exclusive

    candidates = read_models(models)
    out = Path(out) if out is not None else study_dir()
    status = set_status()
    with exclusive(out, f"generality study {display_path(out)}"):  # one `seglib generality` writes it at a time
        if score:
            score_candidates(candidates, [n for n, why in status.items() if not why], out, progress=progress)
        table = build_table(candidates, status, out, anchors, n_boot)
        write_text_atomic(out / TABLE_CSV, table.to_csv(index=False, lineterminator="\n", float_format="%.6g"))
        write_text_atomic(out / TABLE_MD, markdown(table, set_titles(status)))
    return table


def study_markdown(root: Path | None = None) -> str | None:
    """The committed table (reports/generality/table.md of the project), or None where it is not committed."""
    path = (root if root is not None else paths.PROJECT_ROOT) / "reports" / STUDY / TABLE_MD
    return path.read_text(encoding="utf-8") if path.is_file() else None


LEGEND = ("Each cell: mean IoU (95% CI), mean boundary IoU (edges), and the row minus the best MediaPipe anchor on "
          "that test split photo by photo on the same photos (95% paired bootstrap CI; better on: the photos where "
          "the row scores higher). Bold: in-domain (the model trained on that set). Models are scored by their own "
          "protocol (threshold chosen on their own val split; flip TTA unless models.yaml says otherwise), the "
          "anchors at threshold 0.5.")


def readme_block(root: Path) -> str | None:
    """The README's headline table: the committed generality table under one sentence (None where not committed)."""
    found = study_markdown(root)
    if found is None:
        return None
    return ("Every candidate model and both MediaPipe anchors on each registered set's test split (`seglib "
            "generality`). " + LEGEND + "\n\n" + found.rstrip() + default_trails(root))


def default_trails(root: Path) -> str:
    """Lines on the default model (models.yaml's `default:`): on which test splits it is ahead of the best anchor
    photo by photo with the CI above 0, each with its numbers; then where it trails: a split where it is behind
    that anchor or its lead is not shown, and issue #37's floors on this set's test split ('' when nothing is named
    or scored)."""
    folder = Path(root) / "reports" / STUDY
    try:
        default = default_candidate(folder / MODELS_FILE)
        table = pd.read_csv(folder / "table.csv")
    except (ConfigError, OSError, ValueError):
        return ""
    name = default.name if default is not None else None
    rows = table[(table["row"] == name) & (table["status"] == SCORED)] if name else table.iloc[0:0]
    if not len(rows):
        return ""
    ahead = [r for r in rows.itertuples() if r.diff_low > 0]
    each = "; ".join(f"{r.set} {r.minus_best_anchor:+.3f} ({r.diff_low:+.3f} to {r.diff_high:+.3f}) against MediaPipe "
                     f"{r.best_anchor}" for r in rows.itertuples())
    checkpoint = rows.iloc[0]["checkpoint"]
    lines = [f"The default model (`{name}`, the `cpu` profile's recipe; checkpoint `{checkpoint}`, its model card "
             f"beside it) is ahead of both MediaPipe models photo by photo with the CI above 0 on {len(ahead)} of "
             f"{len(rows)} test splits: {each}."]
    trails = [f"on {r.set}'s test split it is behind MediaPipe {r.best_anchor} ({r.minus_best_anchor:+.3f}, "
              f"{r.diff_low:+.3f} to {r.diff_high:+.3f})" for r in rows.itertuples() if r.diff_high < 0]
    trails += [f"on {r.set}'s its lead over MediaPipe {r.best_anchor} is not shown (the CI, {r.diff_low:+.3f} to "
               f"{r.diff_high:+.3f}, holds 0)" for r in rows.itertuples() if r.diff_low <= 0 <= r.diff_high]
    home = rows[rows["set"] == FLOOR_SET]
    if len(home):
        r = home.iloc[0]
        missed = [f"{what} {value:.3f} (target {target})" for what, value, target in (
            ("mean IoU", r["mean_iou"], FLOOR_MEAN_IOU), ("boundary IoU", r["mean_boundary_iou"], FLOOR_BOUNDARY_IOU))
            if value < target]
        if missed:
            trails.append(f"on {FLOOR_SET}'s test split its {' and its '.join(missed)} miss issue #37's targets")
    if trails:
        lines.append(f"Where it still trails: {'; '.join(trails)}.")
    return "\n\n" + "\n\n".join(lines)


def results_section(root: Path) -> str | None:
    """docs/results.md's section on the table (None where it is not committed)."""
    found = study_markdown(root)
    if found is None:
        return None
    return ("## Across domains: the generality table\nEvery candidate listed in `reports/generality/models.yaml` and "
            "MediaPipe's selfie segmenter and Pose's person mask off the shelf, each on each registered set's **test "
            "split**. " + LEGEND + " A test split chooses nothing: models are chosen on the multi-domain val score "
            "([recipes.md](recipes.md#choosing-across-domains)). Source: `reports/generality/` (`seglib generality`), "
            "the anchors' `reports/anchors/`.\n\n" + found.rstrip() + rule_table(root))


def rule_table(root: Path) -> str:
    """The experiment log's rows scored by the multi-domain val rule (each lever and its decision), as a section."""
    log = Path(root) / "reports" / "experiments.csv"
    table = pd.read_csv(log, dtype=str).fillna("") if log.is_file() else pd.DataFrame()
    if "val_multi_domain" not in table or not (table["val_multi_domain"] != "").any():
        return ""
    rows = table[table["val_multi_domain"] != ""]
    lines = ["| model or lever | multi-domain val mean IoU | boundary IoU | each set (mean IoU/boundary IoU) | decision |",
             "|---|---|---|---|---|"]
    lines += [f"| `{r.run}` | {r.val_multi_domain} | {r.val_multi_domain_boundary} | {r.val_by_set} | {r.notes} |"
              for r in rows.itertuples()]
    return ("\n\n### The multi-domain val rule, lever by lever\nEach lever of issue #37 and the default model, scored "
            "by the one rule (the mean over the registered sets' val splits, each set weighted equally, flip TTA, the "
            "model's own val threshold). Source: `reports/experiments.csv` (`seglib generality --val`, then "
            "`seglib experiments`).\n\n" + "\n".join(lines))
