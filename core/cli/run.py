"""``clf run``: train, evaluate and export (or --dry-run / --resume)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, List, Optional

import typer
from clf.cli.app import (LogFormatOpt, PluginOpt, QuietOpt, VerboseOpt, _close, _host,
                         _observer, _print_reports, _verbose, app, cli_errors, out)
from clf.config import RunConfig, config_from_file
from clf.errors import UsageError
from clf.cli.render import esc, leaderboard_table, print_deployment

# RunConfig field -> clf run option, for the one flag named otherwise.
_OPTION = {"plugins": "plugin"}


def _default(name: str) -> Any:
    """RunConfig's default for field ``name``: the one source of every ``clf run`` default."""
    return RunConfig.__dataclass_fields__[name].default


def _text_default(name: str) -> str:
    """The default of a field whose flag takes text (a list, "0.875"/"none", a number or "all")."""
    value = _default(name)
    return ",".join(value) if isinstance(value, tuple) else str(value)


# Over 80 lines only because typer declares each of the ~50 flags as a parameter; the body is short.
@app.command()
@cli_errors(interrupt=True, run_dir=("resume", "output"), write_errors=True)
def run(
    ctx: typer.Context,
    config_file: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML file of run options; flags given here override it."),
    backbone: str = typer.Option(_default("backbone"), help="Backbone name (see 'clf backbones'); several, comma-separated, with --folds K: each scored by K-fold cross-validation, the best trained and exported, with the leaderboard."),
    classes: Optional[int] = typer.Option(_default("classes"), help="Number of classes; checked against the data. Omit to infer."),
    data: str = typer.Option(_default("data"), help="Folder of class folders, or of train/ val/ (test/) folders; or a labels file (.csv path,labels or .jsonl)."),
    epochs: int = typer.Option(_default("epochs"), help="Head training epochs (on cached features: cheap)."),
    batch_size: int = typer.Option(_default("batch_size"), help="Images per batch."),
    image_size: Optional[int] = typer.Option(_default("image_size"), help="Square input size; default: the backbone's."),
    center_crop: str = typer.Option(_text_default("center_crop"), metavar="FRACTION", help="Keep this centred fraction of each photo before resizing (0.875: how ImageNet backbones were evaluated); 'none': resize the whole photo."),
    lr: float = typer.Option(_default("lr"), help="Adam learning rate of the head (fine-tuning: a tenth of it unless --fine-tune-lr)."),
    head: str = typer.Option(_default("head"), help="Head name (see 'clf heads')."),
    loader: str = typer.Option(_default("loader"), help="Data loader name (see 'clf loaders'); a .csv or .jsonl --data uses labels_file."),
    task: str = typer.Option(_default("task"), help="auto (multi-label when a labels file has a row with two labels), single (one class a photo, softmax) or multilabel (any number of labels, sigmoid scores with per-class thresholds)."),
    export: str = typer.Option(_text_default("export"), help="Comma-separated exporter names (see 'clf exporters')."),
    output: Optional[str] = typer.Option(_default("output"), help="Run folder; default runs/<timestamp>-<backbone>."),
    weights: str = typer.Option(_default("weights"), help="'imagenet' (Keras cache, then download), 'none', or a weights file."),
    seed: int = typer.Option(_default("seed"), help="Random seed for the split, initialisation and shuffling."),
    validation_split: float = typer.Option(_default("validation_split"), help="Validation fraction when the data has no val/ folder."),
    augment: bool = typer.Option(_default("augment"), help="The tutorial's shear/zoom/flip of training images. Acts only where training sees images: with --augment-copies K (K augmented copies, extracted once), with --fine-tune-layers (fine-tuning trains on live images) and for a backbone trained from scratch. Otherwise the head trains on the cached features of the unaugmented images and this changes nothing."),
    dropout: float = typer.Option(_default("dropout"), help="Dropout on the features (or hidden layer) before the softmax; 0: none."),
    hidden_units: int = typer.Option(_default("hidden_units"), help="Width of a hidden ReLU layer in the head (0: none)."),
    tensorboard: bool = typer.Option(_default("tensorboard"), "--tensorboard", help="Write TensorBoard logs to <run folder>/tensorboard."),
    strict_data: bool = typer.Option(_default("strict_data"), "--strict-data", help="Any bad file in the data is an error instead of being quarantined."),
    force: bool = typer.Option(_default("force"), "--force", help="Replace an existing --output run folder."),
    weights_mirror: Optional[str] = typer.Option(None, "--weights-mirror", metavar="URL", help="Base URL of a mirror of the Keras weights files (default: $CLF_WEIGHTS_MIRROR)."),
    resume: Optional[str] = typer.Option(None, "--resume", metavar="RUN_DIR", help="Continue an interrupted run from its last completed epoch (its own settings are used)."),
    quantize: str = typer.Option(_default("quantize"), help="TFLite quantization: none, float16, dynamic or int8 (int8 calibrates on training images)."),
    model_input: str = typer.Option(_default("model_input"), help="What exported models take: 'photo' (the decoded photo at any size; crop and resize inside the model) or 'fixed' (images already at the input size)."),
    verify: bool = typer.Option(_default("verify"), help="Reopen each artifact in its own runtime and compare with the trained model."),
    augment_copies: int = typer.Option(_default("augment_copies"), help="Augmented copies of each training image whose features are cached beside the clean one (K more extraction passes)."),
    cache: bool = typer.Option(_default("cache"), help="Keep extracted features in the on-disk cache (--no-cache: extract in memory only)."),
    cache_dir: Optional[str] = typer.Option(_default("cache_dir"), help="Feature cache folder; default $CLF_CACHE_DIR/features or ~/.cache/clf/features."),
    fine_tune_layers: str = typer.Option(_text_default("fine_tune_layers"), help="After the head phase, unfreeze the top N backbone weight layers, or 'all' (0: off)."),
    fine_tune_epochs: int = typer.Option(_default("fine_tune_epochs"), help="Epochs of the fine-tuning phase."),
    fine_tune_lr: Optional[float] = typer.Option(_default("fine_tune_lr"), help="Fine-tuning learning rate; default --lr / 10."),
    class_weight: str = typer.Option(_default("class_weight"), help="'balanced', 'none', or 'auto' (balanced when the largest class has over 3x the smallest)."),
    patience: int = typer.Option(_default("patience"), help="Stop after this many epochs without a better validation loss and restore the best weights (0: off)."),
    strategy: str = typer.Option(_default("strategy"), help="tf.distribute strategy: auto, default, mirrored, multiworker or tpu (auto: mirrored when more than one GPU is visible)."),
    precision: str = typer.Option(_default("precision"), help="auto, float32, mixed_float16 or mixed_bfloat16 (auto: mixed_float16 on a GPU that supports it, else float32)."),
    solver: str = typer.Option(_default("solver"), help="auto: the default softmax head without a hidden layer is solved to convergence on the cached features (L2 chosen by cross-validation; --epochs, --lr, --dropout do not apply); keras: Keras fit for --epochs."),
    last_epoch: bool = typer.Option(_default("last_epoch"), "--last-epoch", help="Keras fit: keep the last epoch's weights instead of the best validation epoch's."),
    schedule: str = typer.Option(_default("schedule"), help="Learning rate of Keras fit and fine-tuning: cosine (linear warm-up over 10% of the steps, then cosine decay to 0) or constant."),
    label_smoothing: float = typer.Option(_default("label_smoothing"), help="Label smoothing of the cross-entropy in Keras fit and fine-tuning (0: none; e.g. 0.1)."),
    weight_decay: float = typer.Option(_default("weight_decay"), help="Decoupled weight decay (AdamW) in Keras fit and fine-tuning (0: Adam; e.g. 1e-4)."),
    folds: int = typer.Option(_default("folds"), help="K >= 2: also score K-fold cross-validation (stratified, seeded by --seed) on every labelled image's cached features: mean and 95% t interval of accuracy, macro F1 and per-class recall in the report and metrics.json; the exported model is trained as without it (0: off)."),
    track: str = typer.Option(_text_default("track"), help="Experiment trackers to record the run in, comma-separated callback plugins: e.g. mlflow (pip install 'clf[mlflow]'; ./mlruns or $MLFLOW_TRACKING_URI)."),
    tta: str = typer.Option(_default("tta"), help="Test-time augmentation inside the model: none, or flip (features averaged with the mirror image's; two backbone passes per image)."),
    unknown: str = typer.Option(_default("unknown"), help="Unknown-photo rejection: auto (ViM with the solved head, else Mahalanobis distance), off, vim, maha, energy or max-softmax. The exported model outputs a known score after the probabilities; below its threshold a photo is 'unknown'."),
    accept_known: float = typer.Option(_default("accept_known"), help="Share of photos like the training images that the unknown-photo threshold accepts (calibrated out of fold on the training images)."),
    plugin: Optional[List[str]] = PluginOpt,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the effective TOML and the dataset summary; train nothing."),
    log_format: str = LogFormatOpt,
    quiet: bool = QuietOpt,
    verbose: bool = VerboseOpt,
    runtime: str = typer.Option(_default("runtime"), help="What runs the frozen backbone during extraction: auto (the fastest of LiteRT and OpenVINO that reproduces TensorFlow's features, when faster than TensorFlow), tensorflow, tflite, onnx or openvino."),
) -> None:
    """Train a classifier on a folder of images, evaluate it and export it."""
    options = locals()  # the parameters, before any other name is bound
    _verbose(verbose)  # after the app callback's: also counts when given after 'run'
    options["plugin"] = tuple(plugin or ())
    values = {f: options[_OPTION.get(f, f)] for f in RunConfig.__dataclass_fields__}

    def explicit(field: str) -> bool:  # compared by name: typer >= 0.26 vendors click
        source = ctx.get_parameter_source(_OPTION.get(field, field))
        return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")

    # The flags given on the command line: they override --config; a resume checks them.
    given = {f: v for f, v in values.items() if explicit(f)}

    from clf.data.loading import check_early

    if weights_mirror:
        os.environ["CLF_WEIGHTS_MIRROR"] = weights_mirror
    if resume and config_file is not None:
        raise UsageError(f"--config {str(config_file)!r} with --resume {resume!r}: a resume continues with "
                         f"the settings its checkpoint recorded, not a config file's. Drop --config to "
                         f"resume, or drop --resume to start a new run from the file.")
    if not resume:
        config = config_from_file(config_file, given) if config_file is not None else RunConfig(**values)
        check_early(config)  # a typo in --data is reported at once, not after TensorFlow's import
        if "," in config.backbone:  # --backbone a,b,c --folds K: pick the best (clf.train.sweep)
            return _sweep(config, dry_run, log_format, quiet)
        if dry_run:
            return _print_plan(config)
    from clf.train import engine

    observer = _observer(log_format, quiet)
    if resume:
        result = engine.resume(resume, observer, _host(plugin), **given)
    else:
        result = engine.run(config, observer, _host(config.plugins))
    _close(observer)
    _print_reports(result.evaluation, log_format, quiet, result.cross_validation)
    print_deployment(out, result.run_dir, log_format, quiet)
    if resume or log_format != "jsonl" or quiet:
        out.print(f"[bold green]done[/] run folder: {esc(result.run_dir)}", highlight=False, soft_wrap=True)


def _sweep(config: RunConfig, dry_run: bool, log_format: str, quiet: bool) -> None:
    """--backbone a,b,c --folds K: each backbone scored by K-fold, the leaderboard, the best one's run."""
    from clf.train.sweep import backbone_names, sweep

    names = backbone_names(config.backbone)
    if dry_run:
        for name in names:
            _print_plan(config.replace(backbone=name))
        return
    observer = _observer(log_format, quiet)
    result = sweep(config, names, observer, _host(config.plugins))
    _close(observer)
    _print_reports(result.result.evaluation, log_format, quiet, result.result.cross_validation)
    if log_format != "jsonl" or quiet:
        out.print(leaderboard_table(result.leaderboard, config.folds))
        out.print(f"[bold green]done[/] best backbone {esc(result.best)}; run folder: {esc(result.result.run_dir)} "
                  f"(leaderboard: sweep.json, leaderboard.png)", highlight=False, soft_wrap=True)
    else:
        print(json.dumps({"event": "leaderboard", "best": result.best, "leaderboard": result.leaderboard}), flush=True)


def _print_plan(config: RunConfig) -> None:
    """--dry-run: the effective TOML, then the plan and the dataset summary as comments."""
    from clf.train.setup import plan

    summary = plan(config, _host(config.plugins))
    print(summary["toml"], end="", flush=True)  # plain print: rich must not re-wrap the TOML
    lines = [f"# backbone {summary['backbone']} at {summary['image_size'][0]}x{summary['image_size'][1]}, "
             f"head {summary['head']}, loader {summary['loader']}, export {', '.join(summary['exporters'])}",
             f"# classes ({len(summary['class_names'])}): {', '.join(summary['class_names'])}"]
    images = summary.get("images", {})  # multi-label: the per-class counts add up to more
    lines += [f"# {split}: {images.get(split, sum(c.values()))} images ({', '.join(f'{k} {v}' for k, v in c.items())})"
              for split, c in summary["counts"].items()]
    print("\n".join(lines + ["# dry run: nothing trained or written"]), flush=True)


# `clf run --help` panels and value words (clf.cli.app.tidy_help); others from app.METAVARS.
run.help_panels = {  # type: ignore[attr-defined]  # a function attribute tidy_help reads
    "Data": ("data", "classes", "loader", "task", "validation_split", "image_size", "center_crop", "augment",
             "augment_copies", "strict_data"),
    "Model": ("backbone", "weights", "weights_mirror", "head", "dropout", "hidden_units", "tta", "unknown",
              "accept_known"),
    "Training": ("epochs", "batch_size", "lr", "seed", "class_weight", "patience", "fine_tune_layers",
                 "fine_tune_epochs", "fine_tune_lr", "solver", "last_epoch", "schedule", "label_smoothing",
                 "weight_decay", "folds"),
    "Export": ("export", "quantize", "model_input", "verify", "output", "force"),
    "Runtime": ("config_file", "resume", "dry_run", "plugin", "cache", "cache_dir", "strategy", "precision",
                "runtime", "tensorboard", "track", "log_format", "quiet", "verbose", "help"),
}
run.metavars = {  # type: ignore[attr-defined]  # a function attribute tidy_help reads
    "classes": "N", "epochs": "N", "image_size": "PIXELS", "lr": "RATE", "output": "DIR",
    "weights": "imagenet|none|FILE", "seed": "N", "validation_split": "FRACTION",
    "dropout": "FRACTION", "hidden_units": "N", "augment_copies": "K", "cache_dir": "DIR",
    "fine_tune_layers": "N|all", "fine_tune_epochs": "N", "fine_tune_lr": "RATE",
    "class_weight": "auto|balanced|none", "patience": "N", "strategy": "NAME", "precision": "NAME",
    "runtime": "auto|tensorflow|tflite|onnx", "solver": "auto|keras", "schedule": "cosine|constant",
    "label_smoothing": "FRACTION", "weight_decay": "RATE", "tta": "none|flip",
    "model_input": "photo|fixed", "unknown": "auto|off|SCORE", "accept_known": "FRACTION",
    "folds": "K", "track": "NAMES", "backbone": "NAME[,NAME...]", "task": "auto|single|multilabel",
}
