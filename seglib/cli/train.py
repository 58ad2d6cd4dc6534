"""`seglib train`."""

from __future__ import annotations

import functools

from seglib.cli.options import PROFILE_HELP, add_data_options, add_settings_options
from seglib.infra.errors import SeglibError
from seglib.infra.paths import display_path
from seglib.runs import LAST


def add_parser(sub) -> None:
    """Register `seglib train`."""
    train = sub.add_parser("train", help="train a segmentation network (which one: the profile's `model`)",
                           description="Train the profile's network: cpu/gpu fine-tune MediaPipe's selfie segmenter, "
                                       "cpu-unet trains a canonical U-Net on MediaPipe's encoder, cpu-scratch our "
                                       "compact U-Net from random weights, smoke a tiny U-Net.")
    train.add_argument("--profile", default=None,
                       help=f"{PROFILE_HELP}; default auto (with --resume: the run's own profile)")
    train.add_argument("--run", required=True, help="run name: outputs go to runs/NAME/")
    add_settings_options(train)
    train.add_argument("--resume", action="store_true", help=f"continue runs/NAME/{LAST}")
    train.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    add_data_options(train)
    train.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from seglib.infra.io import WriteError, write_error
    from seglib.infra.values import parse_assignments
    from seglib.profiles import make_config
    from seglib.runs import Run
    from seglib.training.engine import resume_config, train, writer_lock

    overrides = parse_assignments(args.set)
    run = Run.named(args.run)
    if args.resume and args.overwrite:
        raise SeglibError("--resume continues a run and --overwrite replaces it: give one of them")
    with writer_lock(run):  # from the first look at the run to its end: a second `train --run NAME` is refused
        if args.resume:  # the saved config, checked against a --profile or --set given again
            cfg = functools.partial(resume_config, profile=args.profile, overrides=overrides)
        else:
            cfg = make_config(args.profile or "auto", overrides)
        try:
            result = train(cfg, run, resume=args.resume, overwrite=args.overwrite, dataset_dir=args.data_dir,
                           splits_dir=args.splits_dir)
        except WriteError as exc:  # a full disk: the epochs saved before stay; say how to go on from them
            raise write_error(exc, exc.filename, _resume_hint(run) or None) from None
    if result.stop_reason == "interrupted":  # Ctrl-C (SIGTERM/SIGHUP raise through to the exit status instead)
        return 130
    print(f"best val IoU {result.best_val_iou:.4f} at epoch {result.best_epoch}; {result.epochs_run} epochs in "
          f"{result.train_seconds / 60:.1f} min ({result.images_per_second:.1f} img/s); checkpoints in "
          f"{display_path(run.dir)}{stop_note(result.stop_reason, result.config)}")
    return 0


def _resume_hint(run) -> str:
    """How to continue a run that stopped on a write error, where it saved an epoch ('' where it did not)."""
    if not run.last.is_file():
        return ""
    return (f"; the epochs saved so far are kept: free some space, then continue with `seglib train --run "
            f"{run.name} --resume`")


def stop_note(stop_reason: str, cfg) -> str:
    """Why training stopped before its last epoch, for the final line ('' when it ran them all)."""
    if stop_reason == "time-budget":
        return f"; stopped: time budget of {cfg.max_train_minutes:g} min reached"
    if stop_reason == "early-stopping":
        return f"; stopped early: val IoU did not improve for {cfg.patience} epochs"
    return ""
