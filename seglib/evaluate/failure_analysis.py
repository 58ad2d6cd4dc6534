"""Where the model fails: measurable image attributes, IoU per category, the worst images, a summary sentence.

Used by notebook 05 (and 04 for reusing evaluation results):

- `attributes(per_image, dataset_dir)`: adds to an evaluation's `per_image` table attributes computed from each
  image and its ground-truth mask (figure size, several people, dark, backlit, unusual aspect ratio, grayscale,
  small image) as boolean category columns (`CATEGORIES`);
- `category_table(per_image_with_attrs)`: n, mean and median IoU per category against the rest of the split;
- `failure_summary(table, overall_mean)`: one or two generated sentences naming the worst categories;
- `worst_k(per_image, k)`: the k lowest-IoU images;
- `load_or_evaluate(run_dir, split)`: a split's saved evaluation when it is valid for the run's best checkpoint,
  otherwise a fresh `evaluate_run` (test is never re-scored unless asked: test is scored once per run);
- `predict_ids(predictor, split, ids)`: images, masks and predictions of chosen images for display.

Every attribute is measured on the image at its mask's (the ground truth's) resolution, as evaluation is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from seglib.image_facts import FACT_COLUMNS, image_facts
from seglib.infra.errors import SeglibError

SMALL_FIGURE = 0.10  # true foreground fraction below: a small figure
LARGE_FIGURE = 0.40  # above: a large figure
DARK_BRIGHTNESS = 0.3  # mean brightness (0-1) below: a dark image
BACKLIT_RATIO = 0.6  # figure brightness below this times the background's: backlit
ASPECT_LOW, ASPECT_HIGH = 0.6, 1.8  # width / height outside this range: unusual aspect ratio
SMALL_SIDE = 300  # longest side (at mask resolution, the scored size) below: a small image
LOW_IOU = 0.5  # images scoring below count as failures in the summary
DEGENERATE_SHARE = 0.95  # median predicted person share above this (or below 1 - it): a degenerate model
MIN_N = 2  # categories with fewer images are listed but not compared in the summary

# boolean column -> how the category reads in tables and sentences ("the model fails most on <label>")
CATEGORIES = {
    "small_figure": f"small figures (< {SMALL_FIGURE:.0%} of the picture)",
    "medium_figure": f"medium figures ({SMALL_FIGURE:.0%}-{LARGE_FIGURE:.0%} of the picture)",
    "large_figure": f"large figures (> {LARGE_FIGURE:.0%} of the picture)",
    "several_people": "images with several people",
    "dark": f"dark images (mean brightness < {DARK_BRIGHTNESS:g})",
    "backlit": f"backlit figures (figure < {BACKLIT_RATIO:g} x background brightness)",
    "unusual_aspect": f"unusual aspect ratios (width/height < {ASPECT_LOW:g} or > {ASPECT_HIGH:g})",
    "grayscale": "grayscale images",
    "small_image": f"small images (longest side < {SMALL_SIDE} px)",
}
# the same categories in running text
SHORT_NAMES = {
    "small_figure": "small figures", "medium_figure": "medium-sized figures", "large_figure": "large figures",
    "several_people": "images with several people", "dark": "dark images", "backlit": "backlit figures",
    "unusual_aspect": "unusual aspect ratios", "grayscale": "grayscale images", "small_image": "small images",
}
ATTRIBUTE_COLUMNS = ["size_bucket", "n_people", "brightness", "figure_brightness", "background_brightness",
                     *CATEGORIES]
TABLE_COLUMNS = ["category", "n", "mean_iou", "median_iou", "rest_mean_iou", "difference", "attribute"]


# --------------------------------------------------------------------------------------------- attributes


def size_bucket(fg_fraction: float) -> str:
    """small (< SMALL_FIGURE), large (> LARGE_FIGURE) or medium, from the TRUE foreground fraction."""
    if fg_fraction < SMALL_FIGURE:
        return "small"
    if fg_fraction > LARGE_FIGURE:
        return "large"
    return "medium"


def _pairs_by_id(ids: Sequence[str], dataset_dir=None, split: str | None = None, splits_dir=None,
                 data: str | None = None) -> dict:
    """id -> (image, mask) at mask resolution, decoded from the data set (split items of the registered set(s)
    `data`, default the built-in one; or the built-in set's whole catalog)."""
    from seglib.data.dataset import load_item

    if split is not None:
        from seglib.evaluate import split_items

        items = split_items(split, dataset_dir, splits_dir, data=data)
    else:
        from seglib.data.catalog import load_pairs

        items = load_pairs(dataset_dir)
    items = items.assign(id=items["id"].astype(str)).set_index("id")
    missing = [i for i in ids if i not in items.index]
    if missing:
        raise SeglibError(f"image id(s) {', '.join(missing[:5])} not in the data set"
                          + (f" split {split!r}" if split else ""))
    return {i: load_item(items.loc[i]) for i in ids}


def attributes(per_image: pd.DataFrame, dataset_dir=None, *, records: Sequence[dict] | None = None,
               split: str | None = None, splits_dir=None, data: str | None = None) -> pd.DataFrame:
    """`per_image` (an evaluation's table, needs `id`; `iou` for the tables) plus measurable attributes.

    Added columns: size_bucket (small/medium/large figure, from the true foreground fraction), n_people
    (mask components larger than `image_facts.PERSON_SHARE` of the largest), brightness, figure_brightness,
    background_brightness (0-1, inside / outside the true mask), and one boolean column per category of
    `CATEGORIES`. Images and masks come from `records` (dicts with id, image, mask, e.g. from
    `predictions_for_split`) when given, else they are decoded from the data set (the `split`'s items of the
    registered set(s) `data`, or the built-in set's whole catalog). Existing columns (fg_fraction, mean_brightness, aspect_ratio, is_grayscale, height,
    width) are used when present.
    """
    df = per_image.copy()
    df["id"] = df["id"].astype(str)
    ids = df["id"].tolist()
    decoded: dict = {}

    def pairs() -> dict:  # images and masks are decoded only when a measurement is missing from the table
        if not decoded:
            given = {str(r["id"]): (r["image"], r["mask"]) for r in records or []}
            missing = [i for i in ids if i not in given]
            decoded.update(given, **(_pairs_by_id(missing, dataset_dir, split, splits_dir, data) if missing else {}))
        return decoded

    missing_facts = [col for col in FACT_COLUMNS if col not in df]
    if missing_facts:  # evaluations made before seglib measured them all: measure what is missing now
        facts = pd.DataFrame([image_facts(*pairs()[i]) for i in ids], index=df.index)
        for col in missing_facts:
            df[col] = facts[col]
    for col, measure in (("fg_fraction", lambda m: float((m > 0).mean())), ("height", lambda m: m.shape[0]),
                         ("width", lambda m: m.shape[1])):
        if col not in df:
            df[col] = [measure(pairs()[i][1]) for i in ids]
    df["brightness"] = df["mean_brightness"]
    aspect = df["aspect_ratio"] if "aspect_ratio" in df else df["width"] / df["height"]
    df["size_bucket"] = [size_bucket(f) for f in df["fg_fraction"]]
    df["small_figure"] = df["size_bucket"] == "small"
    df["medium_figure"] = df["size_bucket"] == "medium"
    df["large_figure"] = df["size_bucket"] == "large"
    df["several_people"] = df["n_people"] >= 2
    df["dark"] = df["brightness"] < DARK_BRIGHTNESS
    df["backlit"] = (df["figure_brightness"] < BACKLIT_RATIO * df["background_brightness"]).fillna(False)
    df["unusual_aspect"] = (aspect < ASPECT_LOW) | (aspect > ASPECT_HIGH)
    df["grayscale"] = df["is_grayscale"].astype(bool)
    df["small_image"] = df[["height", "width"]].max(axis=1) < SMALL_SIDE
    for col in CATEGORIES:
        df[col] = df[col].astype(bool)
    return df


def categories_of(row: pd.Series) -> list[str]:
    """Short names of the categories an attributed row belongs to (figure size always first)."""
    out = [f"{row['size_bucket']} figure"] if "size_bucket" in row else []
    short = {"several_people": f"{int(row.get('n_people', 0))} people", "dark": "dark", "backlit": "backlit",
             "unusual_aspect": "unusual aspect", "grayscale": "grayscale", "small_image": "small image"}
    return out + [name for col, name in short.items() if bool(row.get(col, False))]


def category_notes(per_image: pd.DataFrame) -> dict[str, str]:
    """{id: "medium figure, 2 people, backlit"} for the rows of an attributed table (gallery captions)."""
    return {str(row["id"]): ", ".join(categories_of(row)) for _, row in per_image.iterrows()}


# --------------------------------------------------------------------------------------------- tables


def category_table(per_image: pd.DataFrame, min_n: int = 1) -> pd.DataFrame:
    """One row per category with at least `min_n` images: category, n, mean_iou, median_iou, rest_mean_iou
    (mean IoU of the split's other images; NaN when the category holds them all) and difference
    (mean_iou - rest_mean_iou), attribute (the boolean column); sorted by mean IoU, lowest first. Needs `attributes(...)` columns and iou."""
    missing = [c for c in CATEGORIES if c not in per_image]
    if missing:
        raise ValueError(f"category_table: columns {missing} missing; run failures.attributes(per_image) first")
    iou = per_image["iou"].astype(float)
    rows = []
    for col, label in CATEGORIES.items():
        inside = per_image[col].astype(bool)
        n = int(inside.sum())
        if n < max(1, min_n):
            continue
        rest = iou[~inside]
        mean = float(iou[inside].mean())
        rest_mean = float(rest.mean()) if len(rest) else float("nan")
        rows.append({"category": label, "n": n, "mean_iou": mean, "median_iou": float(iou[inside].median()),
                     "rest_mean_iou": rest_mean, "difference": mean - rest_mean, "attribute": col})
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    return table.sort_values(["mean_iou", "n"], ascending=[True, False], kind="stable").reset_index(drop=True)


def category_long(per_image: pd.DataFrame) -> pd.DataFrame:
    """Long format for plotting: one row per (category, image) with id and iou (an image appears once per
    category it belongs to), plus an "all images" row per image; categories ordered by mean IoU."""
    parts = [pd.DataFrame({"category": "all images", "id": per_image["id"].astype(str),
                           "iou": per_image["iou"].astype(float)})]
    for col, label in CATEGORIES.items():
        part = per_image[per_image[col].astype(bool)]
        if len(part):
            parts.append(pd.DataFrame({"category": label, "id": part["id"].astype(str),
                                       "iou": part["iou"].astype(float)}))
    long = pd.concat(parts, ignore_index=True)
    order = long.groupby("category", sort=False)["iou"].mean().sort_values(kind="stable").index.tolist()
    long["category"] = pd.Categorical(long["category"], categories=order, ordered=True)
    return long.sort_values("category", kind="stable").reset_index(drop=True)


def worst_k(per_image: pd.DataFrame, k: int = 8) -> pd.DataFrame:
    """The k images with the lowest IoU (ties: lower boundary IoU, then id), lowest first."""
    keys = ["iou"] + (["boundary_iou"] if "boundary_iou" in per_image else []) + ["id"]
    df = per_image.assign(id=per_image["id"].astype(str))
    return df.sort_values(keys, kind="stable").head(max(0, int(k))).reset_index(drop=True)


def spread_ids(per_image: pd.DataFrame, n: int) -> list[str]:
    """Ids of `n` images at evenly spaced IoU ranks, worst to best (a fair sample of the range)."""
    df = per_image.assign(id=per_image["id"].astype(str)).sort_values(["iou", "id"], kind="stable")
    n = min(max(0, int(n)), len(df))
    if n == 0:
        return []
    ranks = np.unique(np.round(np.linspace(0, len(df) - 1, n)).astype(int))
    return df["id"].iloc[ranks].tolist()


def _name(row) -> str:
    return SHORT_NAMES.get(getattr(row, "attribute", ""), row.category)


def _phrase(row) -> str:
    return (f"{_name(row)} (mean IoU {row.mean_iou:.2f} over {row.n} image{'s' if row.n != 1 else ''}, "
            f"vs {row.rest_mean_iou:.2f} on the rest)")


def failure_summary(table: pd.DataFrame, overall_mean: float, per_image: pd.DataFrame | None = None, *,
                    split: str = "test", min_n: int = MIN_N, top: int = 2, margin: float = 0.02,
                    low: float = LOW_IOU) -> str:
    """One or two sentences on where the model fails, generated from a `category_table`.

    Names the (at most `top`) lowest-scoring categories with at least `min_n` images that score more than
    `margin` below the rest of the split, with their n; says when no category stands out, which categories
    were too small to compare, and (given `per_image`) how many images score below `low`.
    """
    usable = table[(table["n"] >= min_n) & table["rest_mean_iou"].notna()]
    worse = usable[usable["difference"] < -margin].sort_values("mean_iou", kind="stable").head(top)
    too_small = table[table["n"] < min_n]
    parts = []
    if len(worse):
        phrases = [_phrase(r) for r in worse.itertuples()]
        parts.append("The model fails most on " + " and on ".join(phrases) + ".")
    elif len(usable):
        parts.append(f"No category stands out: every category with at least {min_n} images scores within "
                     f"{margin:.2f} of the rest of the split or better (overall mean IoU {overall_mean:.2f}).")
    else:
        parts.append(f"Too few images per category to compare (overall mean IoU {overall_mean:.2f}).")
    if per_image is not None and len(per_image) and "fg_fraction_pred" in per_image:
        share = float(per_image["fg_fraction_pred"].median())
        if share >= DEGENERATE_SHARE or share <= 1 - DEGENERATE_SHARE:
            parts.append(f"Beware: the model calls {'almost every' if share >= 0.5 else 'almost no'} pixel person "
                         f"(median predicted share {share:.0%}), so these differences mostly reflect how much of "
                         "each picture the person fills, not what the model finds hard.")
    if per_image is not None and len(per_image):
        n_low = int((per_image["iou"].astype(float) < low).sum())
        parts.append(f"{n_low} of {len(per_image)} {split} images score below {low:g} IoU "
                     f"(mean IoU {overall_mean:.2f}).")
    if len(too_small):
        names = ", ".join(f"{_name(r)} (n={r.n})" for r in too_small.itertuples())
        parts.append(f"Too few to compare (< {min_n} images): {names}.")
    return " ".join(parts)


def predict_ids(predictor, split: str, ids: Sequence[str], dataset_dir=None, *, splits_dir=None,
                data: str | None = None) -> list[dict]:
    """Records (id, image, mask, prob, pred at `predictor.threshold`) for the chosen images of a split (of the
    registered set(s) `data`), in the order of `ids`; images and masks at mask resolution, as scored."""
    ids = [str(i) for i in ids]
    if not ids:
        return []
    pairs = _pairs_by_id(ids, dataset_dir, split, splits_dir, data)
    images = [pairs[i][0] for i in ids]
    probs = predictor.predict_proba_batch(images)
    return [{"id": i, "image": pairs[i][0], "mask": pairs[i][1], "prob": np.asarray(p, dtype=np.float32),
             "pred": (np.asarray(p) >= predictor.threshold).astype(np.uint8)} for i, p in zip(ids, probs, strict=True)]
