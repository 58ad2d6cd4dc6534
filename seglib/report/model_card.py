"""A model card (Mitchell et al. 2019) for a trained run, written with every report: what the model is, where its
weights come from, what it is for and not for, its data, its scores with confidence intervals on val, test and
external sets, the same scores by subgroup (notebook 05's failure categories), its known limits, and how to
reproduce it. Built from the run folder only (no model is run here)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from seglib.data.descriptions import external_check_set
from seglib.data.selection import SEPARATOR
from seglib.evaluate.failure_analysis import CATEGORIES, attributes, category_table
from seglib.infra.errors import SeglibError
from seglib.models.model_registry import model_entry
from seglib.runs import PER_IMAGE, Run
from seglib.settings import TrainConfig, config_from_dict

DATASET = ("parth1620/Human-Segmentation-Dataset-master on GitHub (290 photos of people with binary masks; it "
           "credits VikramShenoy97/Human-Segmentation-Dataset; neither repository states a licence)")
SUBGROUP_SPLIT = "test"
MODEL_CARD = "model_card.md"  # its file name in a report folder


def model_card(run: Run, command: str = "") -> str:
    """The run's model card as Markdown; sections whose source files are missing say so."""
    # 1. what the run folder holds
    cfg = _config(run)
    summary = run.summary() or {}
    settings = _settings(cfg)
    splits = {name: run.metrics(name) for name in ("val", "test")}
    external = {p.name: run.metrics(p.name) for p in sorted(run.eval_root.glob("*"))
                if p.is_dir() and p.name not in ("val", "test") and run.metrics(p.name)}
    trained_sets = _trained_sets(settings)
    command = command or f"seglib report --profile {cfg.get('profile', 'cpu')} --run {run.name}"
    # 2. the sections, in the order of Mitchell et al.
    subgroup_lines, subgroups = _subgroups(run, splits.get(SUBGROUP_SPLIT))
    lines = [f"# Model card: `{run.name}`", "",
             *_model_section(cfg, summary, settings, splits),
             *_use_section(),
             *_data_section(summary, settings),
             *_metrics_section(run, splits, external),
             *subgroup_lines,
             *_limitations_section(trained_sets, subgroups, external),
             *_reproduce_section(command)]
    return "\n".join(line for line in lines if line is not None) + "\n"


def _model_section(cfg: dict, summary: Mapping[str, Any], settings: TrainConfig | None,
                   splits: Mapping[str, dict | None]) -> list[str]:
    n_params = summary.get("parameters")
    size = f"{n_params:,} parameters, " if isinstance(n_params, int) else ""
    return [
        "## Model",
        f"- **What it is:** person segmentation (one probability per pixel that it belongs to a person), "
        f"{_architecture(settings)}, "
        f"{size}input {_input(settings)}; the mask is mapped back to each photo's own size.",
        f"- **Initial weights:** {summary.get('weights', '?')}.",
        _weights_licence(settings),
        f"- **Training:** profile `{cfg.get('profile', '?')}`, {summary.get('epochs_run', '?')} epochs "
        f"(best epoch {summary.get('best_epoch', '?')}, stopped: {summary.get('stop_reason', '?')}), "
        f"{_minutes(summary)} on `{summary.get('device', '?')}`; Dice + BCE loss, AdamW, lr {cfg.get('lr', '?')}, "
        f"{cfg.get('schedule', '?')} schedule, augmentation `{cfg.get('augment', '?')}`, seed {cfg.get('seed', '?')}.",
        f"- **Decision threshold:** {_threshold(splits)} (chosen on val){_tta(splits)}.",
        ""]


def _use_section() -> list[str]:
    return [
        "## Intended use",
        "- Research and teaching: separating people from the background in ordinary photos (portraits, "
        "full-body shots, a few people), as a baseline to compare segmentation methods against.",
        "- Not meant for: identifying or tracking people, surveillance, decisions about individuals, medical "
        "or safety-critical use, or any population or setting unlike the training photos without checking it "
        "first (see the external-set scores and the limitations below).",
        ""]


def _data_section(summary: Mapping[str, Any], settings: TrainConfig | None) -> list[str]:
    return [
        "## Data",
        f"- **Training data:** {DATASET}. Seeded split stratified by foreground fraction, committed in "
        "`data/splits/`: 202 train / 44 val / 44 test photos; byte-identical photos are kept in one split.",
        _other_sets(settings),
        f"- **Trained on:** {_split_record(summary)}.",
        "- Val chose the epoch and the threshold; test was scored once; external sets were never used for "
        "training or choosing anything.",
        ""]


def _metrics_section(run: Run, splits: Mapping[str, dict | None], external: Mapping[str, dict]) -> list[str]:
    """The scores of each split, of each set within a split pooled over several, and of external sets."""
    check = external_check_set()
    by_set = {f"{split} · {name}": m for split in ("val", "test") for name, m in _set_breakdown(run, split).items()}
    return [
        "## Metrics",
        "Mean per-image IoU with a 95% bootstrap CI, scored at each mask's own resolution "
        "(`seglib evaluate`); an image with no person in it and none predicted would score 1.",
        "",
        _metrics_table({**splits, **by_set, **external}, {check.name: check.source}),
        "",
        ("A split of several sets pools their photos; the rows `split · set` score each set's photos on their own "
         "(the pooled row leans toward the set with the most photos)." if by_set else None),
        "" if by_set else None]


def _limitations_section(trained_sets: list[str], subgroups: pd.DataFrame | None,
                         external: Mapping[str, dict]) -> list[str]:
    lowest = [f"{row.category} ({row.mean_iou:.3f} over {row.n})" for row in subgroups.head(2).itertuples()] \
        if subgroups is not None else []
    return [
        "## Limitations",
        ("- 202 training photos, mostly of one person near the centre" if len(trained_sets) < 2 else
         f"- Trained on {len(trained_sets)} sets' training splits ({', '.join(trained_sets)}), each with its own "
         "kind of photo and its own labelling")
        + (f"; on {SUBGROUP_SPLIT} it scores lowest on {' and '.join(lowest)}" if lowest else "")
        + " (notebook 05 shows those photos).",
        "- The data set's masks are a downscale of 198 of its photos: fine detail (hair, fingers) is scored at "
        "the mask's lower resolution; boundary IoU measures the outline.",
        "- The external set's masks leave out small or occluded pedestrians (its readme), so it under-rates a "
        "model that finds them." if external_check_set().name in external else
        ("- No external set was scored: generalisation beyond the training data set is unmeasured."
         if len(trained_sets) < 2 else
         "- Every set it was scored on also trained it (their test splits are in-domain); on other kinds of photo it "
         "is unmeasured here (docs/results.md, the generality table, compares it with MediaPipe on each set)."),
        "- The data set states no licence; the photos' subjects and consent are undocumented.",
        ""]


def _reproduce_section(command: str) -> list[str]:
    return [
        "## How to reproduce",
        f"- `{command}` (trains, evaluates and renders the report; `make reports` does the same).",
        "- On one machine the same seed repeats a CPU run exactly; other machines can differ in the third decimal "
        "(docs/protocol.md, 'What is reproducible').",
        ""]


def _config(run: Run) -> dict:
    try:
        return run.config()
    except Exception:  # noqa: BLE001 - a card without settings still says what it can
        return {}


def _settings(cfg: dict) -> TrainConfig | None:
    """The run's settings as its model was trained (older configs filled in as `config_from_dict` does)."""
    try:
        return config_from_dict(cfg, "config.yaml")
    except SeglibError:  # a card without readable settings still says what it can
        return None


def _architecture(settings: TrainConfig | None) -> str:
    if settings is None:
        return "an architecture its settings do not say"
    entry = model_entry(settings.model)
    return f"{entry.describe(settings)} ({entry.summary})"


def _weights_licence(settings: TrainConfig | None) -> str:
    if settings is None:
        return "- **Licence of the weights:** not known (the run's settings cannot be read)."
    start = model_entry(settings.model).starting_weights(settings.encoder_weights)
    return f"- **Licence of the weights:** {start.licence_for(settings)}."


def _minutes(summary: Mapping[str, Any]) -> str:
    seconds = summary.get("train_seconds")
    return f"{seconds / 60:.1f} min" if isinstance(seconds, (int, float)) else "? min"


def _threshold(splits: Mapping[str, dict | None]) -> str:
    val = splits.get("val") or {}
    return f"{val['threshold']:g}" if isinstance(val.get("threshold"), (int, float)) else "not chosen yet"


def _tta(splits: Mapping[str, dict | None]) -> str:
    test = splits.get("test") or splits.get("val") or {}
    return "; predictions average the photo and its mirror image (flip TTA)" if test.get("tta") else ""


def _split_record(summary: Mapping[str, Any]) -> str:
    record = summary.get("data_split") or {}
    if not record:
        return "not recorded (a run from before seglib recorded its split)"
    return (f"the split in `{record.get('splits_dir', '?')}` (hashes of its photo ids: train "
            f"{record.get('train_sha1')}, val {record.get('val_sha1')}, test {record.get('test_sha1')})")


def _metrics_table(results: Mapping[str, dict | None], sources: Mapping[str, str]) -> str:
    """One row per scored set; an external set with a known source (`sources`) names it."""
    rows = ["| set | photos | mean IoU (95% CI) | median | pooled | Dice | boundary IoU |",
            "|---|---|---|---|---|---|---|"]
    for name, m in results.items():
        if not m:
            rows.append(f"| {name} | — | not scored yet | | | | |")
            continue
        lo, hi = (m.get("mean_iou_ci95") or [float("nan")] * 2)[:2]
        label = f"{name} (external: {sources[name]})" if sources.get(name) else name
        rows.append(f"| {label} | {m.get('n_images')} | {m['mean_iou']:.3f} ({lo:.3f}–{hi:.3f}) | "
                    f"{m.get('median_iou', float('nan')):.3f} | {m.get('pooled_iou', float('nan')):.3f} | "
                    f"{m.get('mean_dice', float('nan')):.3f} | {m.get('mean_boundary_iou', float('nan')):.3f} |")
    return "\n".join(rows)


def _subgroups(run: Run, metrics: dict | None) -> tuple[list[str], pd.DataFrame | None]:
    """Mean IoU by failure category on the test split (from its per-image table; the photos' attributes are
    measured again only where the evaluation predates their columns)."""
    head = [f"## Metrics by subgroup ({SUBGROUP_SPLIT})", ""]
    per_image_file = run.eval_dir(SUBGROUP_SPLIT) / PER_IMAGE
    if not metrics or not per_image_file.is_file():
        return head + [f"{SUBGROUP_SPLIT} not scored yet.", ""], None
    per_image = pd.read_csv(per_image_file, dtype={"id": str})
    try:
        table = category_table(attributes(per_image, split=SUBGROUP_SPLIT))
    except Exception as exc:  # noqa: BLE001 - the data set may be absent where the card is rebuilt
        return head + [f"Not available here ({type(exc).__name__}: {exc}).", ""], None
    rows = ["| subgroup | photos | mean IoU | rest of the split |", "|---|---|---|---|"]
    for row in table.itertuples(index=False):
        rest = "—" if pd.isna(row.rest_mean_iou) else f"{row.rest_mean_iou:.3f}"
        rows.append(f"| {row.category} | {row.n} | {row.mean_iou:.3f} | {rest} |")
    note = (f"Categories are measured from each photo and its mask ({len(CATEGORIES)} kinds; notebook 05). "
            "With a few photos per subgroup the means are rough: read them as where to look, not as rankings.")
    return head + rows + ["", note, ""], table


def _input(settings: TrainConfig | None) -> str:
    """The network input in words."""
    from seglib.transforms.pipelines import describe_input

    return describe_input(settings.input_size, settings.geometry) if settings else "of an unknown size"


def _other_sets(settings: TrainConfig | None) -> str:
    """A line on the other registered sets the run trained on, with their titles and sources ('' for none)."""
    from seglib.data.descriptions import BUILTIN, get

    names = [n for n in (settings.data.split(",") if settings is not None else []) if n != BUILTIN]
    if not names:
        return "- **Other sets:** none; this set alone trained the model."
    described = "; ".join(f"{get(n).title or n} ({get(n).source}; {get(n).licence or 'licence not stated'})"
                          for n in names)
    weights = f", drawn with weights {settings.data_weights}" if settings.data_weights else ""
    return (f"- **Other sets it trained on** (their own committed train splits{weights}; their val splits chose "
            f"beside this one's): {described}. Their test splits are in-domain scores of this model.")


def _trained_sets(settings: TrainConfig | None) -> list[str]:
    """The registered sets the run trained on, in its settings' order (this set alone where they cannot be read)."""
    from seglib.data.descriptions import BUILTIN

    return [n.strip() for n in settings.data.split(",")] if settings is not None else [BUILTIN]


def _set_breakdown(run: Run, split: str) -> dict[str, dict]:
    """Each set's scores within a split pooled over several sets (per-image ids are `set/id`), {} otherwise."""
    from seglib.metrics import summarise

    per_image_file = run.eval_dir(split) / PER_IMAGE
    if not per_image_file.is_file():
        return {}
    per_image = pd.read_csv(per_image_file, dtype={"id": str})
    sets = per_image["id"].str.split(SEPARATOR, n=1).str[0].where(per_image["id"].str.contains(SEPARATOR, regex=False))
    if sets.isna().any() or sets.nunique() < 2:
        return {}
    return {name: summarise(rows) for name, rows in per_image.groupby(sets, sort=False)}
