"""bench.md and folder.md: the bench's tables and findings, from bench.json and folder.json; and the speed
sections of docs/results.md; the README's sentence on how long `make reports` took on a fresh clone."""

from __future__ import annotations

import json
from pathlib import Path

from seglib.studies.markdown import f3, table, with_ci

# the rows of the prediction part
PYTORCH, ONNX, ONNX_ONE_PASS, MEDIAPIPE = ("ours, PyTorch", "ours, ONNX Runtime", "ours, ONNX Runtime, no TTA",
                                          "MediaPipe off the shelf")
ONNX_SMALL = "ours, ONNX Runtime, no TTA, MediaPipe's input size"
ONNX_FAST = "ours trained at 256 px, ONNX Runtime"


def target_checks(ratios: dict, ours: dict) -> list[tuple[str, str, str, bool]]:
    """The speed targets of the benchmark (issue 7): (what, measured, goal, met)."""
    return [
        ("data pipeline vs our training", f"{ratios['pipeline_over_training_ours']:.1f}x", ">= 3x",
         ratios["pipeline_over_training_ours"] >= 3),
        ("our training vs the course configuration", f"{ratios['train_images_per_second']:.2f}x", ">= 1.5x",
         ratios["train_images_per_second"] >= 1.5),
        ("predict per 640x480 photo", f"{ours['predict_ms_per_640x480_photo']:.1f} ms", "<= 50 ms",
         ours["predict_ms_per_640x480_photo"] <= 50),
    ]


def render_markdown(report: dict) -> str:
    """bench.md: the training part and the prediction part, each when measured."""
    parts = []
    if "results" in report:
        parts.append("## Training, data pipeline and prediction speed: ours vs the course configuration\n\n"
                     + markdown_table(report))
    if "prediction" in report:
        parts.append(prediction_markdown(report["prediction"]))
    return "\n".join(parts) or "Nothing measured yet: run `make bench`.\n"


def markdown_table(report: dict) -> str:
    rows = [("training images/s", "train_images_per_second", "{:.1f}"),
            ("data pipeline images/s", "pipeline_images_per_second", "{:.0f}"),
            ("predict ms / 640x480 photo", "predict_ms_per_640x480_photo", "{:.1f}"),
            ("peak memory (MiB)", "peak_rss_mib", "{:.0f}"),
            ("parameters", "parameters", "{:,}"), ("input size", "input_size", "{}")]
    names = list(report["results"])
    lines = ["| measure | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, key, fmt in rows:
        lines.append(f"| {label} | " + " | ".join(fmt.format(report["results"][n][key]) for n in names) + " |")
    r = report["ratios_ours_over_theirs"]
    ours = report["results"][names[0]]
    lines += ["", f"Training speed ours/theirs: {r['train_images_per_second']:.2f}x; prediction "
              f"{r['predict_speedup']:.2f}x faster; our data pipeline runs at "
              f"{r['pipeline_over_training_ours']:.0f}x our training speed.", "",
              "| target | measured | met |", "|---|---|---|"]
    for label, value, goal, ok in target_checks(r, ours):
        lines.append(f"| {label} | {value} | {'yes' if ok else 'no'} ({goal}) |")
    lines += ["",
              f"Machine: {report['machine']['cpu_count']} CPU cores, {report['machine']['platform']}; "
              f"{report['generated']}."]
    return "\n".join(lines) + "\n"


def prediction_markdown(part: dict) -> str:
    """The side-by-side table of the prediction part, the parity line and how ours compares with MediaPipe."""
    n = part["n_photos"]
    lines = [f"## Prediction side by side: {n} {part['split']} photos, end to end", "",
             f"Checkpoint `{part['checkpoint']}`. Each photo at {part['scored_at']}, decoded beforehand; the time "
             "runs from the RGB array to the mask at the photo's size (ours: letterbox, model, TTA, probabilities "
             "back at the photo's size, threshold; MediaPipe: its `process` call, as its worker times it). IoU "
             "scored by `seglib evaluate`'s code on the same photos.", "",
             "| model | runtime | input | TTA | threshold | ms / photo, median | p90 | mean IoU | parameters "
             "| GFLOPs / photo |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in part["models"].items():
        if row["status"] == "measured":
            measured = (f"{'flip' if row['tta'] else 'none'} | {row['threshold']:g} | {row['ms_median']:.1f} | "
                        f"{row['ms_p90']:.1f} | {row['mean_iou']:.3f}")
        else:
            measured = " | | skipped | | "
        lines.append(f"| {name} | {row['runtime']} | {row['input']} | {measured} | {row['parameters']:,} | "
                     f"{row['flops_per_photo'] / 1e9:.2f} |")
    thresholds = "; ".join(dict.fromkeys(f"{name.split(',')[0]}: {row['threshold_source']}"
                                         for name, row in part["models"].items()))
    lines += ["", f"Thresholds: {thresholds}.", "", *prediction_findings(part), "",
              "GFLOPs: torch's FlopCounterMode (convolutions, 2 per multiply-add) at the network's input size, "
              "times two with flip TTA; MediaPipe's graph counted the same way on its bundled "
              "selfie_segmentation.tflite run in PyTorch.",
              f"Machine: {part['machine']['cpu_count']} CPU cores, {part['machine']['platform']}; "
              f"{part['generated']}."]
    return "\n".join(lines) + "\n"


def prediction_findings(part: dict) -> list[str]:
    """One line each: the ONNX-vs-PyTorch parity and how ours in ONNX Runtime compares with MediaPipe."""
    parity, rows = part["parity"], part["models"]
    lines = [f"Parity: mean IoU in ONNX Runtime {parity['onnxruntime_mean_iou']:.4f}, in PyTorch "
             f"{parity['pytorch_mean_iou']:.4f}: {'equal' if parity['equal_to_3_decimals'] else 'NOT equal'} to 3 "
             f"decimals (logits within {parity['export_max_abs_logit_diff']:.2g} of PyTorch's when exported)."]
    ours, theirs = rows[ONNX], rows[MEDIAPIPE]
    if theirs["status"] != "measured":
        return [*lines, f"MediaPipe skipped: {theirs['reason']}"]
    ratio = ours["ms_median"] / theirs["ms_median"]
    speed = f"{ratio:.1f}x MediaPipe's time" if ratio > 1 else f"{1 / ratio:.1f}x faster than MediaPipe"
    lines.append(f"Ours in ONNX Runtime: {ours['ms_median']:.1f} ms per photo (median), {speed} "
                 f"({theirs['ms_median']:.1f} ms), at {ours['mean_iou'] - theirs['mean_iou']:+.3f} mean IoU; "
                 f"it computes {ours['flops_per_photo'] / theirs['flops_per_photo']:.1f}x MediaPipe's FLOPs per "
                 f"photo ({ours['input']}{', two passes for TTA' if ours['tta'] else ''} vs {theirs['input']}).")
    if ONNX_FAST in rows:
        fast = rows[ONNX_FAST]
        ratio = fast["ms_median"] / theirs["ms_median"]
        verdict = ("no slower than" if ratio <= 1 else f"{ratio:.2f}x the time of")
        better = "higher" if fast["mean_iou"] > theirs["mean_iou"] else "not higher"
        lines.append(f"Ours trained at 256 px in ONNX Runtime: {fast['ms_median']:.1f} ms per photo (median), "
                     f"{verdict} MediaPipe ({theirs['ms_median']:.1f} ms), mean IoU {fast['mean_iou']:.3f}, "
                     f"{better} than MediaPipe's ({fast['mean_iou'] - theirs['mean_iou']:+.3f}); "
                     f"{fast['flops_per_photo'] / theirs['flops_per_photo']:.1f}x MediaPipe's FLOPs per photo.")
    if ONNX_ONE_PASS in rows:
        lines.append(_against_mediapipe("Ours in ONNX Runtime without TTA (same threshold)", rows[ONNX_ONE_PASS], theirs))
    if ONNX_SMALL in rows:
        small = rows[ONNX_SMALL]
        lines.append(_against_mediapipe(f"Ours in ONNX Runtime at {small['input']}, no TTA", small, theirs))
    return lines


def _against_mediapipe(label: str, ours: dict, theirs: dict) -> str:
    return (f"{label}: {ours['ms_median']:.1f} ms per photo, {ours['ms_median'] / theirs['ms_median']:.1f}x "
            f"MediaPipe's time, mean IoU {ours['mean_iou']:.3f} ({ours['mean_iou'] - theirs['mean_iou']:+.3f} over "
            "MediaPipe).")


def speed_section(b: dict) -> str:
    """docs/results.md's speed section: bench.json's training and prediction parts."""
    train = b["results"]
    names = list(train)
    rows = [["training images/s", *(f"{train[n]['train_images_per_second']:.1f}" for n in names)],
            ["data pipeline images/s", *(f"{train[n]['pipeline_images_per_second']:.0f}" for n in names)],
            ["predict ms per 640x480 photo", *(f"{train[n]['predict_ms_per_640x480_photo']:.1f}" for n in names)],
            ["peak memory (MiB)", *(f"{train[n]['peak_rss_mib']:.0f}" for n in names)],
            ["parameters", *(f"{train[n]['parameters']:,}" for n in names)],
            ["input size", *(str(train[n]["input_size"]) for n in names)]]
    pred = b["prediction"]
    prow = [[name, m["runtime"], m["input"], "flip" if m["tta"] else "none", m["threshold"], f"{m['ms_median']:.1f}",
             f"{m['ms_p90']:.1f}", f3(m["mean_iou"]), f"{m['flops_per_photo'] / 1e9:.2f}"]
            for name, m in pred["models"].items() if m.get("status") == "measured"]
    pheader = ["model", "runtime", "input", "TTA", "threshold", "ms per photo, median", "p90", "test mean IoU",
               "GFLOPs per photo"]
    return "\n".join([
        "## Speed (`make bench`)",
        f"Source: `reports/bench/bench.json` (and `bench.md`, which the bench writes with more detail). Measured on "
        f"{b['machine']['cpu_count']} CPU cores, {b['generated']}; run-to-run times vary, so run it on an idle machine.",
        "", "Training, data pipeline and prediction against the course solution's configuration:", "",
        table(["measure", *names], rows), "",
        f"On the {pred['n_photos']} test photos end to end (`{pred['checkpoint']}`; {pred['generated']}):", "",
        table(pheader, prow)])


def folder_section(folder: dict) -> str:
    """The folder benchmark as `seglib bench --only folder` writes it (reports/bench/folder.md)."""
    return (f"{folder_markdown(folder).rstrip()}\n\nSource: `reports/bench/folder.json` (and `folder.md`), "
            "written by `seglib bench --only folder`.")


def fast_model_section(v: dict, t: dict) -> str:
    """The 256 px model's training and val scores (reports/reference-256/metrics/)."""
    return "\n".join([
        "## The 256 px model (`reports/reference-256/`)",
        f"The `cpu` recipe at MediaPipe's input size, stretched like MediaPipe (`--set input_size=256 --set "
        f"geometry=resize`), for the speed comparison above: {t['epochs_run']} epochs in "
        f"{t['train_seconds'] / 60:.1f} min; epoch {t['best_epoch']} and threshold {v['threshold']} picked on val "
        f"without TTA, where it scores mean IoU {with_ci(v['mean_iou'], v['mean_iou_ci95'])}. Its test score is "
        "computed by the bench only (above), and nothing was chosen with it."])


def folder_markdown(result: dict) -> str:
    """The folder benchmark as a short Markdown section."""
    names = list(result["mean_iou"])
    ours, theirs = names[:-1], names[-1]
    models = "; ".join(f"`{name}` is `{command}`" for name, command in result["commands"].items())
    lines = [f"## A folder of {result['photos']} photos, end to end", "",
             f"{result['folder']}. {models} (defaults otherwise); against MediaPipe's own runtime writing the "
             f"same masks (decode and write included for all; the fastest of {result['repeats']} runs after an "
             f"untimed one). Machine: {result['machine']['cpu_count']} CPU cores, {result['machine']['platform']}; "
             f"measured {result.get('generated', '')}.", "",
             "Each of our models is scored only on the photos that did not train or validate it (its checkpoint's "
             "record), MediaPipe on all of them; the comparisons below pair the same photos.", "",
             "| load | command | seconds | ms per photo | first line (s) | mean IoU (photos scored) |",
             "|---|---|---|---|---|---|"]
    scored = result.get("scored_photos", {})
    for load, rows in result["loads"].items():
        for name, row in rows.items():
            first = f"{row['first_line_s']:.2f}" if name != theirs else "–"
            lines.append(f"| {load} | {name} | {row['seconds']:.1f} | {row['ms_per_photo']:.1f} | {first} | "
                         f"{result['mean_iou'][name]:.3f} ({scored.get(name, result['photos'])}) |")
    lines.append("")
    paired_of = result.get("vs_mediapipe", {})
    for load, rows in result["loads"].items():
        for name in ours:
            gain = (paired_of[name]["mean"] if name in paired_of
                    else result["mean_iou"][name] - result["mean_iou"][theirs])
            lines.append(f"- {load}, {name}: {rows[name]['seconds'] / rows[theirs]['seconds']:.2f}x MediaPipe's "
                         f"time, at {gain:+.3f} mean IoU on the same photos.")
    for name, paired in result.get("vs_mediapipe", {}).items():
        low, high = paired["ci95"]
        lines.append(f"- {name} against MediaPipe photo by photo: IoU {paired['mean']:+.3f} (95% bootstrap interval "
                     f"{low:+.3f} to {high:+.3f}), better on {paired['better']} of {paired['photos']} photos.")
    return "\n".join(lines) + "\n"


MAIN_JOB_RECORD = Path("reports") / "bench" / "make_reports.json"  # a timed `make reports` on a fresh clone


def main_job_time(root: Path) -> str:
    """A sentence on how long `make reports` took on a fresh clone (MAIN_JOB_RECORD), '' where none is committed."""
    try:
        record = json.loads((Path(root) / MAIN_JOB_RECORD).read_text(encoding="utf-8"))
        same = record.get("same_weights_as")
        return (f" On a fresh clone `make reports` took {record['seconds'] / 60:.0f} min on {record['machine']} "
                f"(set-up and data included; it trained on {', '.join(record['sets'])}; {record['date']}, commit "
                f"{record['commit'][:7]}; `{MAIN_JOB_RECORD.as_posix()}`)" +
                (f"; it trained the weights of {same}." if same else "."))
    except (OSError, ValueError, KeyError, TypeError):
        return ""
