"""The batch: run the numbered notebooks with papermill into a staging folder, stream training progress,
keep a failed attempt, and publish the report only when every notebook succeeded."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import re
import shlex
import shutil
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from seglib.infra import paths
from seglib.infra.errors import SeglibError
from seglib.infra.io import ensure_writable_dir, write_json_atomic, write_text_atomic
from seglib.infra.locks import exclusive
from seglib.infra.paths import JUPYTER_KERNEL, display_path, user_path
from seglib.notebook import resolve_params
from seglib.report.html import DropMessages, render_html
from seglib.report.index import batch_summary, index_html
from seglib.report.kernel import (
    StopFlag,
    cancel_leftover_tasks,
    kernel_manager_class,
    kernel_stderr,
    noting_stops,
    relay_stderr,
    stops_deferred,
)
from seglib.report.model_card import MODEL_CARD, model_card
from seglib.report.params import NotebookParam, find_notebooks, notebook_arguments, notebook_parameters
from seglib.runs import LAST, SUMMARY, Run, read_json

DEFAULT_KERNEL = JUPYTER_KERNEL
logger = logging.getLogger(__name__)

INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


def reuse_notes(run_dir: Path, declared: Mapping[str, Mapping[str, NotebookParam]],
                args: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Plain statements of what the batch will reuse from an earlier run rather than recompute."""
    notes = []
    shown = display_path(run_dir)
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
            notes.append(f"the unfinished run {shown} ({LAST}, no {SUMMARY}) will be resumed by {trainer} "
                         "from its last saved epoch — pass -p retrain=true to start over")
    for split in ("val", "test"):
        metrics_file = run.metrics_file(split)
        if metrics_file.is_file():
            metrics = read_json(metrics_file) or {}
            when = metrics.get("evaluated_at") or _dt.datetime.fromtimestamp(
                metrics_file.stat().st_mtime).isoformat(timespec="minutes")
            notes.append(f"an earlier {split} evaluation exists at {display_path(metrics_file.parent)} (evaluated {when}); "
                         "the evaluation notebook's output says whether it is reused or scored again")
    return notes


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


@dataclass(frozen=True)
class ReportOptions:
    """How `run_report` runs the batch; `params`: extra notebook parameters {name: value}, text values parsed as
    YAML and checked against the declaring notebooks' type hints."""

    data_dir: str | os.PathLike | None = None
    params: Mapping[str, Any] | None = None
    with_code: bool = False
    overwrite: bool = False
    kernel: str = DEFAULT_KERNEL
    notebooks_dir: str | os.PathLike | None = None
    out_root: str | os.PathLike | None = None


def run_report(profile: str = "default", run: str = "default", options: ReportOptions | None = None,
               **option_overrides) -> Path:
    """Execute the numbered notebooks into `reports/NAME/` and write its index.html; returns that path.

    `options`, or its fields as keywords (ReportOptions). Raises ConfigError / SeglibError before anything runs
    when a setting is wrong, and SeglibError naming the notebook and cell when a notebook fails.
    """
    t_batch = time.perf_counter()
    opts = replace(options or ReportOptions(), **option_overrides)
    notebooks = find_notebooks(opts.notebooks_dir)
    ctx = resolve_params(profile, run)  # unknown profile / bad run name -> ConfigError
    data_path = None
    if opts.data_dir not in (None, ""):
        from seglib.data.catalog import find_dataset_dir

        data_path = user_path(opts.data_dir).resolve()
        find_dataset_dir(data_path)  # DataError now rather than in the first notebook
    declared = {nb.name: notebook_parameters(nb) for nb in notebooks}
    base = {"profile": ctx.profile, "run": ctx.run, "data_dir": str(data_path) if data_path else None}
    args = notebook_arguments(declared, base, opts.params, ctx.profile)
    check_kernel(opts.kernel)

    root = user_path(opts.out_root).resolve() if opts.out_root is not None else paths.reports_dir()
    final = root / ctx.run
    _refuse_existing(final, opts.overwrite)
    ensure_writable_dir(root)
    with exclusive(final, f"report {display_path(final)}"):  # a second `seglib report --run NAME` is refused
        _refuse_existing(final, opts.overwrite)  # published by another batch while this one was checking
        return _run_batch(notebooks, declared, args, ctx, root, data_path, opts, t_batch)


def _command(ctx, data_path: Path | None, opts: ReportOptions) -> list[str]:
    """The `seglib report` command that repeats the batch, for its summary and the model card."""
    command = ["seglib", "report", "--profile", ctx.profile, "--run", ctx.run]
    command += ["--data-dir", str(data_path)] if data_path else []
    for key, value in (opts.params or {}).items():
        command += ["-p", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
    return command + (["--with-code"] if opts.with_code else []) + (
        ["--kernel", opts.kernel] if opts.kernel != DEFAULT_KERNEL else [])


def _refuse_existing(final: Path, overwrite: bool) -> None:
    if final.exists() and not overwrite:
        raise SeglibError(f"{display_path(final)} already exists; pass --overwrite to replace it (it is replaced only "
                          "if every notebook succeeds) or choose another --run")


def _run_batch(notebooks: list[Path], declared, args, ctx, root: Path, data_path: Path | None,
               opts: ReportOptions, t_batch: float) -> Path:
    """Execute every notebook into the staging folder, then publish it as reports/NAME (run under the lock)."""
    final, staging, failed = root / ctx.run, root / f".{ctx.run}.partial", root / f"{ctx.run}.failed"
    kernel, with_code, command = opts.kernel, opts.with_code, _command(ctx, data_path, opts)
    n = len(notebooks)
    logger.info(f"report '{ctx.run}': profile {ctx.profile}, kernel {kernel}, {n} notebook{'' if n == 1 else 's'} "
                f"from {display_path(notebooks[0].parent)}")
    notes = reuse_notes(ctx.run_dir, declared, args)
    for note in notes:
        logger.info(note)
    if final.exists():
        logger.info(f"replacing the previous report at {display_path(final)} once every notebook has succeeded "
                    "(it stays as it is if one fails)")
    if staging.exists():
        logger.info(f"removing the staging folder of an earlier, unfinished batch: {display_path(staging)}")
        shutil.rmtree(staging)
    staging.mkdir(parents=True)

    records = [NotebookRecord(nb.name, parameters=args[nb.name]) for nb in notebooks]
    current: NotebookRecord | None = None
    try:
        with _kernel_environment(data_path):
            for i, (nb, rec) in enumerate(zip(notebooks, records, strict=True), 1):
                current = rec
                _run_one(nb, staging, rec, f"[{i}/{n}]", kernel, with_code)
                if rec.status != "ok":
                    kept = _keep_failed(staging, failed, records, ctx, kernel)
                    raise SeglibError(f"notebook {nb.name} failed {rec.error}; partial notebook kept at "
                                      f"{display_path(kept / nb.name)}")
        current = None
        total = time.perf_counter() - t_batch
        summary = batch_summary(ctx, kernel, records, notes, with_code, total, shlex.join(command))
        write_json_atomic(staging / "summary.json", summary)
        card = model_card(Run(ctx.run_dir), shlex.join(command)) if Run(ctx.run_dir).trained else None
        if card is not None:
            write_text_atomic(staging / MODEL_CARD, card)
        write_text_atomic(staging / "index.html", index_html(summary, ctx.run_dir, root, card=card))
        _publish(staging, final, root / f".{ctx.run}.old")
    except KeyboardInterrupt as exc:
        _say_interrupted(exc, current, staging, failed, final, records, ctx, kernel)
        raise
    if failed.exists():
        logger.info(f"removing {display_path(failed)}: the failed attempt it holds is superseded by this report")
        shutil.rmtree(failed)
    logger.info(f"{n} notebook{'' if n == 1 else 's'} in {total:.1f} s; report in {display_path(final)}")
    return final / "index.html"


def _run_one(nb: Path, staging: Path, rec: NotebookRecord, counter: str, kernel: str, with_code: bool) -> None:
    """Execute one notebook into `staging` and render its HTML; rec.status says how it went (an interrupt is
    raised). The executed notebook is written under a temporary name and renamed once papermill is done with
    it, so `staging/NAME.ipynb` is never a half-written file."""
    out_nb, running = staging / nb.name, staging / f".{nb.stem}.running.ipynb"
    logger.info(f"{counter} {nb.name} ...")
    t0 = time.perf_counter()
    try:
        _execute(nb, running, rec.parameters, kernel)
    except KeyboardInterrupt:
        rec.status, rec.seconds = "interrupted", time.perf_counter() - t0
        with contextlib.suppress(Exception):
            cancel_leftover_tasks()
        _settle(running, out_nb)
        raise
    except Exception as exc:  # noqa: BLE001 - papermill, nbclient and kernel errors all stop the batch
        rec.status, rec.seconds = "failed", time.perf_counter() - t0
        rec.error = _describe_failure(exc)
        if _settle(running, out_nb):
            with contextlib.suppress(Exception):  # best effort: the HTML of the partial notebook helps too
                render_html(out_nb, out_nb.with_suffix(".html"), with_code=with_code)
        return
    os.replace(running, out_nb)
    rec.status, rec.seconds = "ok", time.perf_counter() - t0
    t1 = time.perf_counter()
    render_html(out_nb, out_nb.with_suffix(".html"), with_code=with_code)
    rec.html_seconds = time.perf_counter() - t1
    logger.info(f"{counter} {nb.name} ... {rec.seconds:.1f} s")


def _settle(running: Path, out_nb: Path) -> bool:
    """Keep a stopped notebook's partial copy as `out_nb` if it reads back as a notebook (papermill may have been
    stopped while writing it); remove it otherwise. True when kept."""
    import nbformat

    if not running.is_file():
        return False
    try:
        nbformat.read(str(running), as_version=4)
    except Exception:  # noqa: BLE001 - cut off mid-write: not a notebook
        running.unlink(missing_ok=True)
        return False
    os.replace(running, out_nb)
    return True


def _publish(staging: Path, final: Path, old: Path) -> None:
    """Rename the finished staging folder to reports/NAME, replacing a previous report; a stop signal waits
    until the renames are done, so the previous report is never left hidden in `.NAME.old`."""
    with stops_deferred():
        if final.exists():
            if old.exists():
                shutil.rmtree(old)
            os.replace(final, old)
            try:
                os.replace(staging, final)
            except BaseException:
                os.replace(old, final)
                raise
            shutil.rmtree(old)
            logger.info(f"replaced the previous report at {display_path(final)}")
        else:
            os.replace(staging, final)


def _say_interrupted(exc: KeyboardInterrupt, current: NotebookRecord | None, staging: Path, failed: Path,
                     final: Path, records: list[NotebookRecord], ctx, kernel: str) -> None:
    """One line on what an interrupted batch left: the attempt kept as NAME.failed, or the published report."""
    how = exc.args[0] if exc.args else "SIGINT"
    if not staging.exists():  # the stop came after the report was published
        logger.info(f"{how}: stopped after the report was complete; it is in {display_path(final)}")
        return
    kept = _keep_failed(staging, failed, records, ctx, kernel)
    where = f"during {current.notebook}" if current is not None else "while publishing the report"
    previous = f"; the previous report at {display_path(final)} is unchanged" if final.exists() else ""
    logger.info(f"{how} {where}: the notebooks run so far are kept at {display_path(kept)}{previous}")


# Lines a notebook prints that the terminal should see while it runs (training progress from seglib.training.engine).
PROGRESS_LINE = re.compile(r"^(run \S+: |epoch +\d+/\d+ |interrupted|Reusing the trained run|Resuming the unfinished "
                           r"run|retrain=True: )")


def _execute(nb: Path, out_nb: Path, parameters: dict, kernel: str) -> None:
    import papermill

    # The runner has validated the parameters with papermill's own inspector already (params.py); its repeat
    # of that check would only print the same findings again for every notebook.
    quiet = DropMessages("Passed unknown parameter", "Unable to parse line")
    loggers = [logging.getLogger("papermill"), logging.getLogger("papermill.translators")]
    for lg in loggers:
        lg.addFilter(quiet)
    # Papermill hands every output of the kernel to its logger as it arrives (log_output=True): forward the
    # progress lines, so a long training shows in the terminal, and nothing else.
    stream = _ProgressLines()
    main_logger = loggers[0]
    saved = main_logger.level, main_logger.propagate
    main_logger.addHandler(stream)
    main_logger.setLevel(logging.INFO)
    main_logger.propagate = False
    stop = StopFlag()
    try:
        with kernel_stderr() as err, noting_stops(stop):
            try:
                papermill.execute_notebook(str(nb), str(out_nb), parameters=parameters, kernel_name=kernel,
                                           cwd=str(nb.parent), progress_bar=sys.stdout.isatty(), log_output=True,
                                           start_timeout=180, extra_arguments=_kernel_arguments(kernel),
                                           kernel_manager_class=kernel_manager_class(stop, err))
            finally:
                if stop.signum is None:  # a stopped kernel's own stderr is only the noise of its shutdown
                    relay_stderr(err)
    finally:
        main_logger.removeHandler(stream)
        main_logger.setLevel(saved[0])
        main_logger.propagate = saved[1]
        for lg in loggers:
            lg.removeFilter(quiet)


class _ProgressLines(logging.Handler):
    """Pass the notebook's progress lines (PROGRESS_LINE) to the runner's logger, indented; drop the rest."""

    def __init__(self):
        super().__init__(level=logging.INFO)

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR and record.name == "papermill":
            return  # papermill's own errors reach the runner as exceptions
        for line in str(record.getMessage()).splitlines():
            if PROGRESS_LINE.match(line.strip()):
                logger.info(f"      {line.strip()}")


def _kernel_arguments(kernel: str) -> list[str]:
    """For an IPython kernel: log errors only. Its one routine warning (the localhost connection papermill
    sets up is "running over TCP without encryption") would otherwise be printed once per notebook."""
    from jupyter_client.kernelspec import KernelSpecManager

    try:
        argv = KernelSpecManager().get_kernel_spec(kernel).argv
    except Exception:  # noqa: BLE001 - unknown spec: start it as it is
        return []
    return ["--IPKernelApp.log_level=ERROR"] if any("ipykernel" in str(a) for a in argv) else []


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


def _keep_failed(staging: Path, failed: Path, records: list[NotebookRecord], ctx, kernel: str) -> Path:
    """Move the staging folder (partial notebook included) to NAME.failed; the previous report stays."""
    with contextlib.suppress(Exception):
        write_json_atomic(staging / "summary.json", batch_summary(ctx, kernel, records, [], False, None))
    if failed.exists():
        logger.info(f"replacing the older failed attempt at {display_path(failed)}")
        shutil.rmtree(failed)
    os.replace(staging, failed)
    return failed


@contextlib.contextmanager
def _kernel_environment(data_dir: Path | None) -> Iterator[None]:
    """The kernel's environment: absolute SEGLIB_* paths (it runs in notebooks/, where relative ones would
    point elsewhere), --data-dir as SEGLIB_DATA_DIR, and matplotlib's inline backend (a MPLBACKEND=Agg left in
    the shell would otherwise keep every figure out of the report)."""
    names = (paths.ENV_DATA_DIR, paths.ENV_RUNS_DIR, paths.ENV_REPORTS_DIR)
    saved = {name: os.environ.get(name) for name in (*names, "MPLBACKEND")}
    try:
        for name in names:
            if os.environ.get(name):
                os.environ[name] = str(user_path(os.environ[name]).resolve())
        if data_dir is not None:
            os.environ[paths.ENV_DATA_DIR] = str(data_dir)
        os.environ["MPLBACKEND"] = INLINE_BACKEND
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
