"""`seglib report`: run the numbered notebooks with papermill and publish them as HTML with an index page.

One profile and one run name go to every notebook (each gets only the parameters it declares), the kernel is
pinned ("seglib", registered by `make setup`) and notebooks run with `notebooks/` as their working directory.
Everything is checked before the first notebook starts: the profile and run name, every `-p key=value`
(the name must be declared by a notebook, the value must match its type hint), the kernel, the output folder.

Outputs, in `reports/NAME/`: each executed notebook (`01_....ipynb`), its HTML rendering (`01_....html`,
code hidden unless `with_code`), `index.html` (links, headline metrics, run config, training and split summary,
timings) and `summary.json`. The batch runs in a staging folder (`reports/.NAME.partial/`), which replaces
`reports/NAME` only when every notebook succeeded (an existing report is only replaced with `overwrite`).
A failing notebook stops the batch: the staging folder becomes `reports/NAME.failed/` (the partially executed
notebook included), the previous report stays as it was, and a SeglibError names the notebook and the cell.
"""

from __future__ import annotations

import ast
import contextlib
import datetime as _dt
import html
import json
import logging
import os
import re
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import seglib
from seglib import config
from seglib.config import display_path
from seglib.errors import ConfigError, SeglibError
from seglib.io import ensure_writable_dir, write_json_atomic, write_text_atomic
from seglib.notebook import TYPES, check_parameter, coerce_parameter, resolve_params
from seglib.runs import Run, read_json

DEFAULT_KERNEL = "seglib"
NOTEBOOK_PATTERN = "[0-9][0-9]_*.ipynb"
# Set by the runner itself (from --profile, --run, --data-dir), never through -p.
RESERVED = {"profile": "--profile", "run": "--run", "data_dir": "--data-dir"}
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


# ------------------------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class NotebookParam:
    """One name assigned in a notebook's `parameters` cell."""

    name: str
    type_name: str  # the type hint ("int", "str", ...), else the literal default's type, else ""
    default: Any = None
    help: str = ""


def find_notebooks(notebooks_dir: str | os.PathLike | None = None) -> list[Path]:
    """The numbered notebooks (`NN_name.ipynb`), in order."""
    folder = Path(notebooks_dir) if notebooks_dir is not None else config.notebooks_dir()
    found = sorted(p for p in folder.glob(NOTEBOOK_PATTERN) if p.is_file())
    if not found:
        raise SeglibError(f"{folder}: no numbered notebooks ({NOTEBOOK_PATTERN}) found")
    return [p.resolve() for p in found]


def notebook_parameters(path: str | os.PathLike) -> dict[str, NotebookParam]:
    """Names, type hints, defaults and help of the cell tagged `parameters` ({} when there is none).

    Parsed with `ast`: papermill's own inspector (`papermill.inspect_notebook`) skips every line with a second
    `=` (e.g. `profile: str = "default"  # "default" = $SEGLIB_PROFILE`), which would hide real parameters.
    It is still used as a fallback for a cell that is not plain Python.
    """
    import nbformat

    path = Path(path)
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the same user problem
        raise SeglibError(f"{path.name}: not a readable notebook ({exc})") from None
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        return {}
    source = cells[0].source
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return _papermill_parameters(path)
    lines = source.splitlines()
    params: dict[str, NotebookParam] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            name, hint, value = stmt.target.id, ast.unparse(stmt.annotation).strip("'\""), stmt.value
        elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            name, hint, value = stmt.targets[0].id, "", stmt.value
        else:
            continue
        try:
            default = ast.literal_eval(value) if value is not None else None
        except ValueError:
            default = None
        if not hint and default is not None and type(default).__name__ in TYPES:
            hint = type(default).__name__
        tail = lines[stmt.end_lineno - 1][stmt.end_col_offset:].strip()
        params[name] = NotebookParam(name, hint, default, tail[1:].strip() if tail.startswith("#") else "")
    return params


def _papermill_parameters(path: Path) -> dict[str, NotebookParam]:
    import papermill

    found = papermill.inspect_notebook(str(path))
    params = {}
    for name, info in found.items():
        hint = info.get("inferred_type_name") or ""
        params[name] = NotebookParam(name, "" if hint == "None" else hint, info.get("default"), info.get("help", ""))
    return params


def parse_param_args(items: list[str] | None) -> dict[str, str]:
    """['key=value', ...] from `-p` into {key: raw text} (typed later against the notebooks' hints)."""
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"-p {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"-p {item!r}: expected KEY=VALUE")
        out[key] = value.strip()
    return out


def coerce_param(name: str, value: Any, type_name: str, where: str = "") -> Any:
    """A `-p` value as the declared type and within its rule (`seglib.notebook`: the kernel uses the same code)."""
    try:
        value = coerce_parameter(name, value, type_name)
        check_parameter(name, value)
    except ConfigError as exc:
        place = f" (declared in {where})" if where else ""
        raise ConfigError(f"-p {str(exc).removeprefix('parameter ')}{place}") from None
    return value


def notebook_arguments(declared: Mapping[str, Mapping[str, NotebookParam]], base: Mapping[str, Any],
                       user: Mapping[str, Any] | None, profile: str) -> dict[str, dict[str, Any]]:
    """Per notebook: the parameters it gets (only those it declares). Validates every user parameter."""
    user = dict(user or {})
    known = sorted({name for params in declared.values() for name in params} - set(RESERVED))
    for name in user:
        if name in RESERVED:
            raise ConfigError(f"-p {name}: set it with {RESERVED[name]}, not -p")
        if name not in known:
            raise ConfigError(f"-p {name}: no notebook has a parameter {name!r}; valid names: "
                              f"{', '.join(known) or '(none)'}")
    out: dict[str, dict[str, Any]] = {}
    for nb_name, params in declared.items():
        args = {k: v for k, v in base.items() if k in params and v is not None}
        for name, value in user.items():
            if name in params:
                args[name] = coerce_param(name, value, params[name].type_name, nb_name)
        out[nb_name] = args
    overrides = [args["overrides"] for args in out.values() if isinstance(args.get("overrides"), dict)]
    if overrides:  # training settings: an unknown key or a bad value fails now, not 20 minutes in
        from seglib.settings import make_config

        try:
            make_config(profile, overrides[0])
        except ConfigError as exc:
            raise ConfigError(f"-p overrides: {exc}") from None
    return out


# ------------------------------------------------------------------------------------------- reuse notes


def reuse_notes(run_dir: Path, declared: Mapping[str, Mapping[str, NotebookParam]],
                args: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Plain statements of what the batch will reuse from an earlier run rather than recompute."""
    notes = []
    shown = _show(run_dir)
    run = Run(run_dir)
    trainer = next((nb for nb, params in declared.items() if "retrain" in params), None)
    if trainer is not None:
        retrain = bool(args.get(trainer, {}).get("retrain", declared[trainer]["retrain"].default))
        decision = run.training_decision(retrain)
        if decision == "retrain":
            notes.append(f"retrain=true: {trainer} will train {shown} again, replacing it once the new run has "
                         "saved its first epoch")
        elif decision == "reuse":
            summary = run.summary() or {}
            when = _dt.datetime.fromtimestamp(run.summary_file.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
            best = summary.get("best_val_iou")
            best_text = f", best val IoU {best:.4f}" if isinstance(best, (int, float)) else ""
            profile = f", profile {summary['profile']}" if summary.get("profile") else ""
            notes.append(f"reusing the trained run {shown} (trained {when}{best_text}{profile}); {trainer} will "
                         "not retrain — delete it or pass -p retrain=true to train again")
            if args.get(trainer, {}).get("overrides"):
                notes.append("-p overrides only take effect when training: they are compared with the reused "
                             "run's settings, not applied (pass -p retrain=true to apply them)")
        elif decision == "resume":
            notes.append(f"the unfinished run {shown} (last.pt, no train_summary.json) will be resumed by {trainer} "
                         "from its last saved epoch — pass -p retrain=true to start over")
    for split in ("val", "test"):
        metrics_file = run.metrics_file(split)
        if metrics_file.is_file():
            metrics = read_json(metrics_file) or {}
            when = metrics.get("evaluated_at") or _dt.datetime.fromtimestamp(
                metrics_file.stat().st_mtime).isoformat(timespec="minutes")
            notes.append(f"an earlier {split} evaluation exists at {_show(metrics_file.parent)} (evaluated {when}); "
                         "the evaluation notebook's output says whether it is reused or scored again")
    return notes


# ------------------------------------------------------------------------------------------- the batch


@dataclass
class NotebookRecord:
    notebook: str
    status: str = "not run"  # ok | failed | interrupted | not run
    seconds: float | None = None
    html_seconds: float | None = None
    parameters: dict = field(default_factory=dict)
    error: str = ""

    @property
    def stem(self) -> str:
        return Path(self.notebook).stem


def check_kernel(kernel: str) -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    if kernel not in specs:
        extra = " (or pass --kernel python3)" if "python3" in specs else ""
        raise SeglibError(f"Jupyter kernel {kernel!r} not found; run `make setup`{extra}"
                          f" — installed kernels: {', '.join(sorted(specs)) or 'none'}")


def run_report(profile: str = "auto", run: str = "default", *, data_dir: str | os.PathLike | None = None,
               params: Mapping[str, Any] | None = None, with_code: bool = False, overwrite: bool = False,
               kernel: str = DEFAULT_KERNEL, notebooks_dir: str | os.PathLike | None = None,
               out_root: str | os.PathLike | None = None, log: Callable[[str], Any] = print) -> Path:
    """Execute the numbered notebooks into `reports/NAME/` and write its index.html; returns that path.

    `params`: extra notebook parameters {name: value}; text values are parsed as YAML and checked against the
    declaring notebooks' type hints. Raises ConfigError / SeglibError before anything runs when a setting is
    wrong, and SeglibError naming the notebook and cell when a notebook fails.
    """
    t_batch = time.perf_counter()
    notebooks = find_notebooks(notebooks_dir)
    ctx = resolve_params(profile, run)  # unknown profile / bad run name -> ConfigError
    data_path = None
    if data_dir not in (None, ""):
        from seglib.data.catalog import find_dataset_dir

        data_path = Path(data_dir).expanduser().resolve()
        find_dataset_dir(data_path)  # DataError now rather than in the first notebook
    declared = {nb.name: notebook_parameters(nb) for nb in notebooks}
    base = {"profile": ctx.profile, "run": ctx.run, "data_dir": str(data_path) if data_path else None}
    args = notebook_arguments(declared, base, params, ctx.profile)
    command = ["seglib", "report", "--profile", ctx.profile, "--run", ctx.run]
    command += ["--data-dir", str(data_path)] if data_path else []
    for key, value in (params or {}).items():
        command += ["-p", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
    command += (["--with-code"] if with_code else []) + (["--kernel", kernel] if kernel != DEFAULT_KERNEL else [])
    check_kernel(kernel)

    root = Path(out_root).expanduser().resolve() if out_root is not None else config.reports_dir()
    final, staging, failed = root / ctx.run, root / f".{ctx.run}.partial", root / f"{ctx.run}.failed"
    if final.exists() and not overwrite:
        raise SeglibError(f"{_show(final)} already exists; pass --overwrite to replace it (it is replaced only "
                          "if every notebook succeeds) or choose another --run")
    ensure_writable_dir(root)

    n = len(notebooks)
    log(f"report '{ctx.run}': profile {ctx.profile}, kernel {kernel}, {n} notebook{'' if n == 1 else 's'} "
        f"from {_show(notebooks[0].parent)}")
    notes = reuse_notes(ctx.run_dir, declared, args)
    for note in notes:
        log(note)
    if final.exists():
        log(f"replacing the previous report at {_show(final)} once every notebook has succeeded "
            "(it stays as it is if one fails)")
    if staging.exists():
        log(f"removing the staging folder of an earlier, unfinished batch: {_show(staging)}")
        shutil.rmtree(staging)
    staging.mkdir(parents=True)

    records = [NotebookRecord(nb.name, parameters=args[nb.name]) for nb in notebooks]
    with _kernel_environment(data_path):
        for i, (nb, rec) in enumerate(zip(notebooks, records, strict=True), 1):
            out_nb = staging / nb.name
            log(f"[{i}/{n}] {nb.name} ...")
            t0 = time.perf_counter()
            try:
                _execute(nb, out_nb, rec.parameters, kernel, log)
            except KeyboardInterrupt:
                rec.status, rec.seconds = "interrupted", time.perf_counter() - t0
                kept = _keep_failed(staging, failed, records, ctx, kernel, log)
                log(f"interrupted during {nb.name}; partial notebook kept at {_show(kept / nb.name)}")
                raise
            except Exception as exc:  # noqa: BLE001 - papermill, nbclient and kernel errors all stop the batch
                rec.status, rec.seconds = "failed", time.perf_counter() - t0
                rec.error = _describe_failure(exc)
                with contextlib.suppress(Exception):  # best effort: the HTML of the partial notebook helps too
                    render_html(out_nb, out_nb.with_suffix(".html"), with_code=with_code)
                kept = _keep_failed(staging, failed, records, ctx, kernel, log)
                raise SeglibError(f"notebook {nb.name} failed {rec.error}; partial notebook kept at "
                                  f"{_show(kept / nb.name)}") from None
            rec.status, rec.seconds = "ok", time.perf_counter() - t0
            t1 = time.perf_counter()
            render_html(out_nb, out_nb.with_suffix(".html"), with_code=with_code)
            rec.html_seconds = time.perf_counter() - t1
            log(f"[{i}/{n}] {nb.name} ... {rec.seconds:.1f} s")

    total = time.perf_counter() - t_batch
    summary = _summary(ctx, kernel, records, notes, with_code, total, shlex.join(command))
    write_json_atomic(staging / "summary.json", summary)
    write_text_atomic(staging / "index.html", index_html(summary, ctx.run_dir, root))
    if final.exists():
        old = root / f".{ctx.run}.old"
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
        os.replace(staging, final)
        shutil.rmtree(old)
        log(f"replaced the previous report at {_show(final)}")
    else:
        os.replace(staging, final)
    if failed.exists():
        log(f"removing {_show(failed)}: the failed attempt it holds is superseded by this report")
        shutil.rmtree(failed)
    log(f"{n} notebook{'' if n == 1 else 's'} in {total:.1f} s; report in {_show(final)}")
    return final / "index.html"


# Lines a notebook prints that the terminal should see while it runs (training progress from seglib.engine).
PROGRESS_LINE = re.compile(r"^(run \S+: |epoch +\d+/\d+ |interrupted|Reusing the trained run|Resuming the unfinished "
                           r"run|retrain=True: )")


def _execute(nb: Path, out_nb: Path, parameters: dict, kernel: str, log: Callable[[str], Any] = print) -> None:
    import papermill

    # The runner has validated the parameters itself; papermill's own check misreads cells whose comments
    # contain "=" and would warn about parameters that are in fact declared.
    quiet = _DropMessages("Passed unknown parameter", "Unable to parse line")
    loggers = [logging.getLogger("papermill"), logging.getLogger("papermill.translators")]
    for lg in loggers:
        lg.addFilter(quiet)
    # Papermill hands every output of the kernel to its logger as it arrives (log_output=True): forward the
    # progress lines, so a long training shows in the terminal, and nothing else.
    stream = _ProgressLines(log)
    main_logger = loggers[0]
    saved = main_logger.level, main_logger.propagate
    main_logger.addHandler(stream)
    main_logger.setLevel(logging.INFO)
    main_logger.propagate = False
    try:
        papermill.execute_notebook(str(nb), str(out_nb), parameters=parameters, kernel_name=kernel,
                                   cwd=str(nb.parent), progress_bar=sys.stdout.isatty(), log_output=True,
                                   start_timeout=180, extra_arguments=_kernel_arguments(kernel))
    finally:
        main_logger.removeHandler(stream)
        main_logger.setLevel(saved[0])
        main_logger.propagate = saved[1]
        for lg in loggers:
            lg.removeFilter(quiet)


class _ProgressLines(logging.Handler):
    """Pass the notebook's progress lines (PROGRESS_LINE) to `log`, indented; drop all other output."""

    def __init__(self, log: Callable[[str], Any]):
        super().__init__(level=logging.INFO)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR and record.name == "papermill":
            return  # papermill's own errors reach the runner as exceptions
        for line in str(record.getMessage()).splitlines():
            if PROGRESS_LINE.match(line.strip()):
                self.log(f"      {line.strip()}")


def _kernel_arguments(kernel: str) -> list[str]:
    """For an IPython kernel: log errors only. Its one routine warning (the localhost connection papermill
    sets up is "running over TCP without encryption") would otherwise be printed once per notebook."""
    from jupyter_client.kernelspec import KernelSpecManager

    try:
        argv = KernelSpecManager().get_kernel_spec(kernel).argv
    except Exception:  # noqa: BLE001 - unknown spec: start it as it is
        return []
    return ["--IPKernelApp.log_level=ERROR"] if any("ipykernel" in str(a) for a in argv) else []


class _DropMessages(logging.Filter):
    def __init__(self, *prefixes: str):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(self.prefixes)


def _describe_failure(exc: BaseException) -> str:
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        first = str(exc.evalue).strip().splitlines()
        detail = f"{exc.ename}: {first[0]}" if first else exc.ename
        where = f"In [{exc.exec_count}]" if exc.exec_count is not None else f"#{exc.cell_index + 1}"
        code = next((line.strip() for line in str(exc.source or "").splitlines() if line.strip()), "")
        if len(code) > 60:
            code = code[:57] + "..."
        starts = f", which starts {code!r}" if code else ""
        return f"at cell {where}{starts} ({detail})"
    text = str(exc).strip().splitlines()
    return f"({type(exc).__name__}: {text[0] if text else 'no message'})"


def _keep_failed(staging: Path, failed: Path, records: list[NotebookRecord], ctx, kernel: str, log) -> Path:
    """Move the staging folder (partial notebook included) to NAME.failed; the previous report stays."""
    with contextlib.suppress(Exception):
        write_json_atomic(staging / "summary.json", _summary(ctx, kernel, records, [], False, None))
    if failed.exists():
        log(f"replacing the older failed attempt at {_show(failed)}")
        shutil.rmtree(failed)
    os.replace(staging, failed)
    return failed


@contextlib.contextmanager
def _kernel_environment(data_dir: Path | None) -> Iterator[None]:
    """The kernel's environment: absolute SEGLIB_* paths (it runs in notebooks/, where relative ones would
    point elsewhere), --data-dir as SEGLIB_DATA_DIR, and matplotlib's inline backend (a MPLBACKEND=Agg left in
    the shell would otherwise keep every figure out of the report)."""
    names = (config.ENV_DATA_DIR, config.ENV_RUNS_DIR, config.ENV_REPORTS_DIR)
    saved = {name: os.environ.get(name) for name in (*names, "MPLBACKEND")}
    try:
        for name in names:
            if os.environ.get(name):
                os.environ[name] = str(Path(os.environ[name]).expanduser().resolve())
        if data_dir is not None:
            os.environ[config.ENV_DATA_DIR] = str(data_dir)
        os.environ["MPLBACKEND"] = INLINE_BACKEND
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# ------------------------------------------------------------------------------------------- HTML


def render_html(ipynb: str | os.PathLike, html_path: str | os.PathLike, *, with_code: bool = False) -> Path:
    """An executed notebook as one HTML file (figures embedded as base64 PNG); code hidden unless with_code."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(ipynb), as_version=4)
    # Progress bars (tqdm widgets) would only show as a frozen first frame or as a script fetched from a CDN:
    # the HTML keeps the text they print, not the widgets. The .ipynb beside it keeps everything.
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.get("outputs", []) if WIDGET_MIME not in o.get("data", {})]
    hide = not with_code
    exporter = HTMLExporter(exclude_input=hide, exclude_input_prompt=hide, exclude_output_prompt=hide,
                            embed_images=True)
    quiet = _DropMessages("Alternative text is missing")  # matplotlib figures have no alt text; not news
    exporter.log.addFilter(quiet)
    try:
        body, _ = exporter.from_notebook_node(nb)
    finally:
        exporter.log.removeFilter(quiet)
    write_text_atomic(html_path, body)
    return Path(html_path)


def _summary(ctx, kernel: str, records: list[NotebookRecord], notes: list[str], with_code: bool,
             total: float | None, command: str = "") -> dict:
    run_dir = ctx.run_dir
    headline = {}
    for split in ("test", "val"):
        metrics = read_json(run_dir / "eval" / split / "metrics.json")
        if metrics:
            headline[split] = {k: metrics.get(k) for k in ("n_images", "threshold", "mean_iou", "mean_iou_ci95",
                                                            "median_iou", "pooled_iou", "mean_dice",
                                                            "mean_boundary_iou") if k in metrics}
    return {
        "run": ctx.run,
        "profile": ctx.profile,
        "kernel": kernel,
        "with_code": with_code,
        "command": command,
        "generated_at": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "seglib_version": seglib.__version__,
        "run_dir": display_path(run_dir),
        "seconds_total": round(total, 2) if total is not None else None,
        "reused": notes,
        "notebooks": [
            {"notebook": r.notebook, "html": f"{r.stem}.html", "status": r.status,
             "seconds": round(r.seconds, 2) if r.seconds is not None else None,
             "parameters": r.parameters, **({"error": r.error} if r.error else {})}
            for r in records
        ],
        "headline": headline,
    }


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:64rem;
padding:0 1rem;color:#222;line-height:1.45}
h1{margin-bottom:.2rem}h2{margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
.meta{color:#666;margin-top:0}table{border-collapse:collapse;margin:.5rem 0;font-size:.92rem}
th,td{border:1px solid #ddd;padding:.25rem .6rem;text-align:left}th{background:#f4f4f4}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}tr.model td{font-weight:600}
.note{background:#fff8e1;border-left:3px solid #f0b400;padding:.4rem .8rem;margin:.4rem 0}
.big{font-size:1.6rem;font-weight:600}.muted{color:#777}code{background:#f4f4f4;padding:0 .2rem}
"""


def index_html(summary: Mapping[str, Any], run_dir: Path, reports_root: Path | None = None) -> str:
    """The report's landing page: self-contained HTML (inline CSS, no scripts, no external assets)."""
    e = html.escape
    run, profile = summary["run"], summary["profile"]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Segmentation report — {e(run)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Human figure segmentation — run <code>{e(run)}</code></h1>",
        f'<p class="meta">profile <b>{e(profile)}</b> · generated {e(summary["generated_at"])} · '
        f'seglib {e(summary["seglib_version"])} · kernel {e(summary["kernel"])} · '
        f'total {_num(summary.get("seconds_total"), 1)} s</p>',
    ]
    parts += [f'<p class="note">{e(note)}</p>' for note in summary.get("reused", [])]

    rows = []
    for i, nb in enumerate(summary["notebooks"], 1):
        title = Path(nb["notebook"]).stem
        rows.append(f'<tr><td class="num">{i}</td><td><a href="{e(nb["html"])}">{e(title)}</a></td>'
                    f'<td><a href="{e(nb["notebook"])}">.ipynb</a></td><td>{e(nb["status"])}</td>'
                    f'<td class="num">{_num(nb.get("seconds"), 1)}</td></tr>')
    parts += ["<h2>Notebooks</h2>",
              '<table><tr><th class="num">#</th><th>report</th><th>notebook</th><th>status</th>'
              '<th class="num">run time (s)</th></tr>', *rows, "</table>"]

    test = read_json(run_dir / "eval" / "test" / "metrics.json")
    val = read_json(run_dir / "eval" / "val" / "metrics.json")
    parts.append("<h2>Headline metrics (test)</h2>")
    if test:
        parts.append(_headline_block(test))
    else:
        parts.append(f'<p class="muted">No test evaluation found ({e(_show(run_dir / "eval" / "test"))}).</p>')
    if val:
        parts += ["<h2>Validation metrics</h2>", _headline_block(val)]

    train = read_json(run_dir / "train_summary.json")
    if train:
        minutes = train.get("train_seconds", 0) / 60 if isinstance(train.get("train_seconds"), (int, float)) else None
        facts = {"initial weights": train.get("weights"), "epochs run": train.get("epochs_run"),
                 "best epoch": train.get("best_epoch"), "best val IoU": _num(train.get("best_val_iou"), 4),
                 "training time (min)": _num(minutes, 1), "images/s": _num(train.get("images_per_second"), 1),
                 "device": train.get("device"), "stop reason": train.get("stop_reason"),
                 "parameters": train.get("parameters")}
        parts += ["<h2>Training</h2>", _kv_table(facts)]
    cfg_file = run_dir / "config.yaml"
    if cfg_file.is_file():
        try:
            cfg = yaml.safe_load(cfg_file.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            cfg = {}
        if isinstance(cfg, dict) and cfg:
            parts += [f"<h2>Run configuration <span class=\"muted\">({e(_show(cfg_file))})</span></h2>",
                      _kv_table(cfg)]

    parts.append("<h2>Data and splits</h2>")
    try:
        from seglib.data.splits import split_summary

        table = split_summary()
        parts.append(table.to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0))
    except (SeglibError, OSError, KeyError, ValueError) as exc:
        parts.append(f'<p class="muted">split summary unavailable: {e(str(exc))}</p>')

    for csv in _experiment_tables(reports_root):
        try:
            import pandas as pd

            table = pd.read_csv(csv)
        except Exception:  # noqa: BLE001 - an unreadable side table must not break the index
            continue
        parts += [f'<h2>Experiments <span class="muted">({e(_show(csv))})</span></h2>',
                  table.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0, na_rep="")]

    parts += ["<h2>Timing</h2>", '<table><tr><th>notebook</th><th class="num">run (s)</th></tr>']
    parts += [f'<tr><td>{e(nb["notebook"])}</td><td class="num">{_num(nb.get("seconds"), 1)}</td></tr>'
              for nb in summary["notebooks"]]
    parts += [f'<tr><td><b>total, with HTML rendering</b></td><td class="num">'
              f'{_num(summary.get("seconds_total"), 1)}</td></tr></table>']
    command = summary.get("command") or f"seglib report --profile {profile} --run {run}"
    parts.append(f'<p class="muted">Reproduce: <code>{e(command)} --overwrite</code>'
                 f' · machine-readable summary: <a href="summary.json">summary.json</a></p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _headline_block(metrics: Mapping[str, Any]) -> str:
    e = html.escape
    ci = metrics.get("mean_iou_ci95") or [None, None]
    lead = (f'<p><span class="big">mean IoU {_num(metrics.get("mean_iou"), 4)}</span> '
            f'(95% CI {_num(ci[0], 4)}–{_num(ci[1], 4)}) · median {_num(metrics.get("median_iou"), 4)} · '
            f'pooled {_num(metrics.get("pooled_iou"), 4)} · mean Dice {_num(metrics.get("mean_dice"), 4)} · '
            f'mean boundary IoU {_num(metrics.get("mean_boundary_iou"), 4)}<br>'
            f'<span class="muted">{e(str(metrics.get("n_images", "?")))} images · threshold '
            f'{_num(metrics.get("threshold"), 3)}'
            f'{" · TTA" if metrics.get("tta") else ""}'
            f'{" · evaluated " + e(str(metrics["evaluated_at"])) if metrics.get("evaluated_at") else ""}</span></p>')
    cols = [("mean_iou", "mean IoU"), ("mean_iou_ci95", "95% CI"), ("median_iou", "median IoU"),
            ("pooled_iou", "pooled IoU"), ("mean_dice", "mean Dice"), ("mean_boundary_iou", "mean boundary IoU")]
    head = "".join(f'<th class="num">{label}</th>' for _, label in cols)
    rows = [("model", metrics, True)] + [(name, scores, False)
                                         for name, scores in (metrics.get("baselines") or {}).items()]
    body = []
    for name, scores, is_model in rows:
        cells = []
        for key, _ in cols:
            value = scores.get(key) if isinstance(scores, Mapping) else None
            if key == "mean_iou_ci95":
                lo, hi = (value or [None, None])[:2] if isinstance(value, (list, tuple)) else (None, None)
                cells.append(f'<td class="num">{_num(lo, 3)}–{_num(hi, 3)}</td>')
            else:
                cells.append(f'<td class="num">{_num(value, 4)}</td>')
        body.append(f'<tr{" class=model" if is_model else ""}><td>{e(name)}</td>{"".join(cells)}</tr>')
    return lead + f"<table><tr><th>predictor</th>{head}</tr>{''.join(body)}</table>"


def _kv_table(mapping: Mapping[str, Any]) -> str:
    e = html.escape
    rows = "".join(f"<tr><th>{e(str(k))}</th><td>{e(_text(v))}</td></tr>" for k, v in mapping.items())
    return f"<table>{rows}</table>"


def _text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _num(value: Any, digits: int) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "—" if value is None else html.escape(str(value))
    return f"{value:.{digits}f}"


def _experiment_tables(reports_root: Path | None) -> list[Path]:
    candidates = [config.PROJECT_ROOT / "reports" / "experiments.csv"]
    if reports_root is not None:
        candidates.insert(0, Path(reports_root) / "experiments.csv")
    seen, out = set(), []
    for path in candidates:
        key = path.resolve()
        if key not in seen and path.is_file():
            seen.add(key)
            out.append(path)
    return out


def _show(path: Path) -> str:
    """A path as reports and messages write it: relative to the project when inside it (`config.display_path`)."""
    return display_path(path)


# ------------------------------------------------------------------------------------------- CLI


def add_parser(subparsers) -> None:
    """Register `seglib report`."""
    p = subparsers.add_parser(
        "report", help="run the numbered notebooks with papermill and render them to reports/NAME/ as HTML",
        description="Execute notebooks/NN_*.ipynb in order with one profile and run name, write the executed "
                    "notebooks, their HTML and an index.html to reports/NAME/ (or $SEGLIB_REPORTS_DIR/NAME).")
    p.add_argument("--profile", default="auto", help="smoke | cpu | gpu | cpu-scratch | auto (gpu if CUDA, else cpu); "
                                                      "'default' = $SEGLIB_PROFILE, else auto")
    p.add_argument("--run", default="default", help="run name: trains/reads runs/NAME, writes reports/NAME "
                                                    "(default: the resolved profile's name)")
    p.add_argument("--data-dir", type=Path, help="data set folder (default: $SEGLIB_DATA_DIR or data/raw)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a notebook parameter, e.g. -p retrain=true -p 'overrides={epochs: 5}' (repeatable; "
                        "the name must be declared by a notebook and the value match its type)")
    p.add_argument("--with-code", action="store_true", help="keep the code cells in the HTML (hidden by default)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing reports/NAME (only once every notebook has succeeded)")
    p.add_argument("--kernel", default=DEFAULT_KERNEL, help="Jupyter kernel to run the notebooks with "
                                                            f"(default: {DEFAULT_KERNEL}, registered by `make setup`)")
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    params = parse_param_args(args.param)
    index = run_report(args.profile, args.run, data_dir=args.data_dir, params=params, with_code=args.with_code,
                       overwrite=args.overwrite, kernel=args.kernel)
    print(index)
    return 0


__all__ = ["NotebookParam", "add_parser", "check_kernel", "coerce_param", "find_notebooks", "index_html",
           "notebook_arguments", "notebook_parameters", "parse_param_args", "render_html", "reuse_notes",
           "run_report"]
