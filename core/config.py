"""RunConfig: one flat description of a training run (CLI, TOML or Python), validated on
construction so an invalid run fails before any data is read; in TOML, one key per field."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from contextlib import suppress
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Mapping, NoReturn

from clf.data.images import DEFAULT_CENTER_CROP
from clf.errors import ConfigError, did_you_mean

# Choices live here, not beside their code (clf.train.distribute), so validating imports no training code.
QUANTIZE_MODES = ("none", "float16", "dynamic", "int8")
# "photo": any-size photo, cropped and resized in the model; "fixed": input-size images (clf.data.fitting).
MODEL_INPUTS = ("photo", "fixed")
STRATEGIES = ("auto", "default", "mirrored", "multiworker", "tpu")  # tf.distribute strategies
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")  # Keras dtype policies
# Largest --image-size: activation memory grows with the area.
MAX_IMAGE_SIZE = 2048
RUNTIMES = ("auto", "tensorflow", "tflite", "onnx", "openvino")  # the frozen backbone's (clf.infer.choice)
SOLVERS = ("auto", "keras")  # auto: the linear softmax head solved (clf.train.linear_head)
SCHEDULES = ("cosine", "constant")  # learning rate of every Keras fit (clf.train.optim)
TTA = ("none", "flip")  # test-time augmentation built into the model (clf.train.model)
# Unknown-photo scores (clf.data.preprocessing.KnownScore); --unknown also takes auto and off.
UNKNOWN_SCORES = ("vim", "maha", "energy", "max-softmax")
TASKS = ("auto", "single", "multilabel")  # clf.data.labels_file


@dataclass
class RunConfig:
    backbone: str = "vgg16"
    classes: int | None = None  # None: inferred from the data
    data: str = "data"
    epochs: int = 20  # head epochs on cached features: cheap, so the tutorial's 20
    batch_size: int = 32
    image_size: int | None = None  # None: the backbone's default input size
    # Centred-crop fraction before resizing (0: none); recorded in labels.json so predict matches.
    center_crop: float = DEFAULT_CENTER_CROP
    # Adam's default: on cached, RMS-scaled features it beat the tutorial's 4e-4 (hymenoptera, flowers5).
    lr: float = 1e-3
    head: str = "softmax"
    loader: str = "directory"  # a .csv/.jsonl --data picks "labels_file" (clf.train.setup.loader_name)
    # "single" (softmax, one class a photo), "multilabel" (sigmoid, any number), or "auto": multi-label
    # when a labels file has a row with two labels (clf.data.labels_file); folders are single-label.
    task: str = "auto"
    export: tuple[str, ...] = ("h5",)
    output: str | None = None  # None: runs/<timestamp>-<backbone>
    weights: str = "imagenet"  # "imagenet", "none" or a path to a weights file
    seed: int = 42
    plugins: tuple[str, ...] = ()
    validation_split: float = 0.2  # used when the data has no val/ folder
    augment: bool = True  # the tutorial's shear/zoom/flip on training images
    # On the features before the softmax: the head's main regulariser with few images (hymenoptera).
    dropout: float = 0.5
    hidden_units: int = 0
    tensorboard: bool = False  # the built-in TensorBoard callback plugin: logs in <run>/tensorboard
    strict_data: bool = False  # any file the dataset doctor would quarantine is an error
    force: bool = False  # replace an existing --output run folder
    quantize: str = "none"  # TFLite: "none", "float16", "dynamic" or "int8"
    model_input: str = "photo"  # one of MODEL_INPUTS: what exported models take
    verify: bool = True  # reopen each artifact in its runtime and compare (core/artifacts/verify.py)
    # Feature caching: see core/train/features.py.
    augment_copies: int = 0  # K augmented feature copies cached beside the clean one
    cache: bool = True  # persistent on-disk feature cache
    cache_dir: str | None = None  # None: features/ in clf's cache folder (clf.files.cache_dir)
    fine_tune_layers: int | str = 0  # 0: off; N: top N weight layers; "all"
    fine_tune_epochs: int = 5
    fine_tune_lr: float | None = None  # None: lr / 10
    class_weight: str = "auto"  # "auto" (balanced when largest class > 3x smallest), "balanced", "none"
    patience: int = 0  # early stopping on validation loss, best weights restored; 0: off
    strategy: str = "auto"  # tf.distribute strategy, one of STRATEGIES (clf.train.distribute)
    precision: str = "auto"  # Keras dtype policy, one of PRECISIONS (clf.train.distribute)
    # Frozen backbone's runtime for extraction; auto: LiteRT once it matches TensorFlow and is faster.
    runtime: str = "auto"
    # "auto": a plain softmax head on cached features is solved exactly (logistic regression, L2 by
    # cross-validation), so the head is independent of seed and epochs; "keras": Keras fit for --epochs.
    solver: str = "auto"
    # Keep the last epoch's weights instead of the lowest-val_loss epoch's (--patience still restores).
    last_epoch: bool = False
    schedule: str = "cosine"  # every Keras fit: linear warm-up, then cosine decay; or "constant"
    label_smoothing: float = 0.0  # Keras fit and fine-tuning; 0: plain cross-entropy
    weight_decay: float = 0.0  # decoupled weight decay (AdamW) for Keras fit and fine-tuning; 0: Adam
    # "flip": features averaged with the mirror image's, cached and in the exported model alike.
    tta: str = "none"
    # Unknown-photo rejection (clf.train.unknown): auto (ViM with the solved head, else Mahalanobis),
    # off, or one of UNKNOWN_SCORES; the threshold accepts accept_known of the training images out of fold.
    unknown: str = "auto"
    accept_known: float = 0.95
    # K >= 2: stratified K-fold scores with 95% intervals over every labelled image's cached
    # features (clf.train.crossval), beside the usual model; 0: off.
    folds: int = 0
    # Experiment trackers: names of callback plugins that record the run (e.g. "mlflow").
    track: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if isinstance(self.export, str):
            self.export = tuple(e.strip() for e in self.export.split(",") if e.strip())
        self.export = tuple(self.export)
        self.plugins = tuple(self.plugins)
        if isinstance(self.track, str):
            self.track = tuple(t.strip().lower() for t in self.track.split(",") if t.strip() and t.strip() != "none")
        self.track = tuple(self.track)
        self.data = str(self.data)
        if self.output is not None:
            self.output = str(self.output)
        self.weights = _normalise_weights(self.weights)
        for name in ("backbone", "head", "loader"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                _bad(name, value, "a non-empty name", f"Run 'clf {name}s' to list them.")
        for name, minimum in (("epochs", 1), ("batch_size", 1), ("fine_tune_epochs", 1), ("seed", 0),
                              ("hidden_units", 0), ("augment_copies", 0), ("patience", 0)):
            _positive_int(self, name, minimum)
        if self.classes is not None:
            _positive_int(self, "classes", minimum=2,
                          fix="A classifier needs at least two classes; omit --classes to infer it.")
        if self.image_size is not None:
            _positive_int(self, "image_size", minimum=8)
            if self.image_size > MAX_IMAGE_SIZE:
                _bad("image_size", self.image_size, f"at most {MAX_IMAGE_SIZE} pixels a side (ImageNet "
                     f"backbones use 224-600; a larger input multiplies memory and time by its area)",
                     "Pass a smaller --image-size (e.g. the backbone's default: omit it).")
        self.center_crop = _normalise_center_crop(self.center_crop)
        _positive_int(self, "folds", minimum=0)
        if self.folds == 1:
            _bad("folds", self.folds, "0 (off) or a number of folds >= 2 (e.g. 5)")
        for name, zero_ok, expected in (
            ("lr", False, "a learning rate between 0 and 1 (e.g. 1e-3)"),
            ("validation_split", False, "a fraction between 0 and 1 (e.g. 0.2)"),
            ("dropout", True, "a fraction in [0, 1) (e.g. 0.5)"),
            ("label_smoothing", True, "a fraction in [0, 1) (e.g. 0.1)"),
            ("weight_decay", True, "a decoupled weight decay in [0, 1) (e.g. 1e-4)"),
            ("accept_known", False, "the share of known photos to accept, between 0 and 1 (e.g. 0.95)"),
        ):
            value = getattr(self, name)
            if not _is_number(value) or not 0 <= value < 1 or (value == 0 and not zero_ok):
                _bad(name, value, expected)
        for flag in ("augment", "tensorboard", "strict_data", "force", "verify", "cache", "last_epoch"):
            if not isinstance(getattr(self, flag), bool):
                _bad(flag, getattr(self, flag), "true or false")
        if self.cache_dir is not None:
            self.cache_dir = str(Path(str(self.cache_dir)).expanduser())
        self.fine_tune_layers = _normalise_fine_tune_layers(self.fine_tune_layers)
        if self.fine_tune_lr is not None and (not _is_number(self.fine_tune_lr) or not 0 < self.fine_tune_lr < 1):
            _bad("fine_tune_lr", self.fine_tune_lr, "a learning rate between 0 and 1, or unset for lr/10")
        for name, choices in (("quantize", QUANTIZE_MODES), ("model_input", MODEL_INPUTS),
                              ("class_weight", ("auto", "balanced", "none")), ("strategy", STRATEGIES),
                              ("precision", PRECISIONS), ("runtime", RUNTIMES), ("solver", SOLVERS),
                              ("schedule", SCHEDULES), ("tta", TTA), ("unknown", ("auto", "off", *UNKNOWN_SCORES)),
                              ("task", TASKS)):
            setattr(self, name, check_name(name, getattr(self, name), choices))
        if not self.export:
            _bad("export", self.export, "at least one exporter name", "Run 'clf exporters'.")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "RunConfig":
        """Build from a flat mapping (a parsed TOML file); unknown keys are errors."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            hints = "".join(did_you_mean(k, known).replace(" Did you mean", f" For {k!r}, did you mean")
                            for k in unknown)
            raise ConfigError(
                f"Unknown configuration key(s): {', '.join(map(repr, unknown))}. Expected only: "
                f"{', '.join(sorted(known))}.{hints} Remove or rename them."
            )
        return cls(**dict(values))

    def replace(self, **changes: Any) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists, not tuples; no None) suitable for TOML and JSON."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items() if v is not None}


def check_name(kind: str, value: str, choices: tuple[str, ...]) -> str:
    """``value`` lower-cased when it is one of ``choices``; else a ConfigError naming the flag."""
    if not isinstance(value, str) or value.strip().lower() not in choices:
        _bad(kind, value, f"one of {', '.join(choices)}", hint=did_you_mean(str(value), choices))
    return value.strip().lower()


def _normalise_weights(value: Any) -> str:
    if value is None:
        return "none"
    text = str(value).strip()
    if text.lower() in ("imagenet", "none"):
        return text.lower()
    if not text:
        _bad("weights", value, "'imagenet', 'none' or a path to a weights file")
    return str(Path(text).expanduser())


def _normalise_center_crop(value: Any) -> float:
    """A fraction in (0, 1], or 0 for no crop; the CLI and TOML may say "none"."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("none", "off"):
            return 0.0
        with suppress(ValueError):  # not a number: refused below
            value = float(text)
    if _is_number(value) and 0 <= value <= 1:
        return float(value)
    _bad("center_crop", value, "a fraction of the photo in (0, 1] (0.875: ImageNet's centre "
         "crop; 1: largest centred box) or 0/'none' to resize the whole photo")


def _normalise_fine_tune_layers(value: Any) -> Any:
    """0 (off), a positive layer count, or "all"; the CLI passes text."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "all":
            return "all"
        if text.isdigit():
            return int(text)
    elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    _bad("fine_tune_layers", value, "a number of top backbone layers (0: off) or 'all'")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_int(cfg: RunConfig, name: str, minimum: int = 1, fix: str = "") -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        _bad(name, value, f"an integer >= {minimum}", fix)


def _bad(name: str, value: Any, expected: str, fix: str = "", hint: str = "") -> NoReturn:
    flag = "--" + name.replace("_", "-")
    raise ConfigError(
        f"Invalid {name} {value!r}: expected {expected}.{hint} "
        + (fix or f"Pass a valid {flag} (or '{name}' in the config file).")
    )


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The flat mapping in a TOML file; a clear ConfigError when it is missing or malformed."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"Config file {str(path)!r} does not exist; expected a TOML file. Check --config.") from None
    except OSError as exc:
        raise ConfigError(f"Cannot read config file {str(path)!r}: {exc.strerror}. Check --config.") from None
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Config file {str(path)!r} is not valid TOML: {exc}. Fix the line it names.") from None
    tables = sorted(k for k, v in values.items() if isinstance(v, dict))
    if tables:
        raise ConfigError(
            f"Config file {str(path)!r} has table(s) {', '.join(f'[{t}]' for t in tables)}; expected "
            f"flat 'key = value' lines (e.g. epochs = 10). Move those keys to the top level."
        )
    return values


def config_from_file(path: str | Path, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """The file's values with ``overrides`` (explicit CLI flags) on top.

    ``force = true`` (deletes a folder) and ``plugins`` (runs code) must come from the command
    line too, since files are shared and replayed; otherwise ConfigError."""
    values = read_config_file(path)
    _check_types(values, path)
    overrides = dict(overrides or {})
    if values.get("force") is True and "force" not in overrides:
        raise ConfigError(
            f"Config file {str(path)!r} says force = true; a config file never replaces a run folder "
            f"(it may be a copy of an earlier run's config.toml, whose folder --force would delete). "
            f"Remove that line, and pass --force on the command line if you mean to replace --output."
        )
    values.pop("force", None)  # older config.toml files carry force = false
    plugins = values.get("plugins") or []
    plugins = [plugins] if isinstance(plugins, str) else list(plugins)
    if plugins and "plugins" not in overrides:
        raise ConfigError(
            f"Config file {str(path)!r} names plugins = {plugins}; clf loads plugin code only when "
            f"the command line names it (a config file is data, and a plugin runs with your "
            f"permissions, even in a --dry-run). Pass {' '.join(f'--plugin {p}' for p in plugins)} "
            f"if you trust {'it' if len(plugins) == 1 else 'them'}, or remove 'plugins' from the file."
        )
    values.update(overrides)
    return RunConfig.from_mapping(values)


# What a TOML value may be, by the first type of a field's annotation.
_TOML_TYPES: dict[str, Callable[[Any], bool]] = {
    "int": lambda v: _is_number(v) and isinstance(v, int),
    "float": _is_number,
    "bool": lambda v: isinstance(v, bool),
    "tuple": lambda v: isinstance(v, (list, str)) and all(isinstance(x, str) for x in v),
    "str": lambda v: isinstance(v, str),
}


_TEXT_FIELDS = {"center_crop"}  # a float that the CLI and TOML may also write as "none"


def _check_types(values: Mapping[str, Any], path: str | Path) -> None:
    """Type errors TOML can express (``epochs = "10"``) name the key before validation runs."""
    expected = {f.name: str(f.type) for f in fields(RunConfig)}
    for key, value in values.items():
        kind = expected.get(key, "")  # an unknown key: RunConfig.from_mapping reports it
        # "int | str": either; "int | None": int. Fields that read text ("none") take a string.
        kinds = [k.split("[")[0] for k in kind.split(" | ") if k != "None"]
        kinds += ["str"] if key in _TEXT_FIELDS else []
        checks = [_TOML_TYPES[k] for k in kinds if k in _TOML_TYPES]
        if checks and not any(check(value) for check in checks):
            raise ConfigError(
                f"Invalid {key} {value!r} in {str(path)!r}: expected {kind.replace(' | None', '')} "
                f"(TOML {type(value).__name__} given). Fix '{key}' in the config file."
            )


def config_to_toml(config: RunConfig) -> str:
    """The config as TOML for ``clf run --config``: without ``force``, with paths made absolute
    so the file repeats the run from any folder."""
    import tomli_w

    values = {k: v for k, v in config.to_dict().items() if k != "force"}
    if Path(values["data"]).expanduser().exists():  # a loader may take something other than a path
        values["data"] = _absolute(values["data"])
    if values["weights"] not in ("imagenet", "none"):
        values["weights"] = _absolute(values["weights"])
    if "cache_dir" in values:
        values["cache_dir"] = _absolute(values["cache_dir"])
    values["plugins"] = [_absolute(p) if p.endswith(".py") or Path(p).is_file() else p for p in values["plugins"]]
    return "# clf run configuration (clf run --config THIS_FILE)\n" + tomli_w.dumps(values)


def _absolute(path: str) -> str:
    """``path`` from the current folder, as an absolute path (links kept, as typed)."""
    return os.path.abspath(os.path.expanduser(path))
