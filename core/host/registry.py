"""Registries of the components plugins provide. Each remembers its plugin, for listings and for
errors naming both plugins of a duplicate. Fields are the keywords of the hook's ``register``
(``clf.hookspecs``; tests/test_plugin_docs.py keeps them in step)."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterable, Iterator, TypeVar

from clf.errors import PluginError, UnknownComponentError

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Component:
    """What every registered component has, whatever its kind."""

    name: str
    """The name it is looked up by (``--backbone NAME``), unique across plugins."""
    plugin: str
    """The plugin that registered it: module, entry-point or ``.py`` file name."""
    aliases: tuple[str, ...] = ()
    """Other names for it."""
    description: str = ""
    """One line for listings; the first line of the function's docstring when not given."""


@dataclass(frozen=True)
class Backbone(Component):
    """A backbone, as ``register_backbones`` registered it."""

    build: Callable[..., Any] = None  # type: ignore[assignment]
    """``build(input_shape, weights) -> keras.Model``: image to pooled features."""
    preprocess: str = "none"
    """The preprocessing mode's name (a function given at registration is stored by name)."""
    input_size: tuple[int, int] = (224, 224)
    """The default ``(height, width)``."""
    min_size: int = 32
    """The smallest side accepted."""
    params: int | None = None
    """Parameter count, for listings (``None``: unknown)."""
    features: int | None = None
    """Feature width, for listings (``None``: unknown)."""
    imagenet_file: Any = None
    """The ImageNet weights file at the default size (a ``clf.WeightsFile``), for ``clf weights``."""
    trainable: bool = False
    """``True`` for a backbone trained with the head (from scratch, like the tutorial's small
    CNN): it is not frozen and runs in training mode (its dropout active) during fit."""


@dataclass(frozen=True)
class Head(Component):
    """A head, as ``register_heads`` registered it."""

    build: Callable[..., Any] = None  # type: ignore[assignment]
    """``build(features, num_classes, **options) -> tensor`` of class probabilities."""


@dataclass(frozen=True)
class DataLoader(Component):
    """A data loader, as ``register_data_loaders`` registered it."""

    load: Callable[..., Any] = None  # type: ignore[assignment]
    """``load(source, *, image_size, seed, validation_split, **_) -> clf.DatasetBundle``."""


@dataclass(frozen=True)
class Exporter(Component):
    """An exporter, as ``register_exporters`` registered it."""

    export: Callable[..., Any] = None  # type: ignore[assignment]
    """``export(model, directory, metadata, **options) -> list[pathlib.Path]``."""
    load: Callable[..., Any] | None = None
    """``load(path, labels) -> clf.Predictor``, or ``None``: its artifacts cannot be reopened."""
    holds: Callable[..., bool] | None = None
    """``holds(path, model) -> bool``: whether a file it wrote holds exactly ``model`` (architecture
    and every weight). True lets the export's round-trip check skip reloading and running it;
    False (or ``None`` here) means the full check (``clf.h5_holds`` for Keras HDF5)."""
    options: tuple[str, ...] = ()
    """Export options it accepts as keyword arguments (e.g. ``"quantize"``,
    ``"representative_data"``); the engine passes only these, so three-argument exporters
    keep working."""
    requires: tuple[str, ...] = ()
    """Modules it imports when it runs (e.g. ``"tf2onnx"``), checked before a run trains: a
    missing extra fails at once, not after the training it would have thrown away."""
    install: str = ""
    """How to install ``requires`` (e.g. ``"pip install 'clf[onnx]'"``), shown when one is missing."""
    fixed_input: bool = False
    """It always gets the fixed-size model (input at the run's size), never the photo model: its
    client resizes (MediaPipe)."""
    check: Callable[[], str | None] | None = None
    """``check() -> None`` when what it needs outside Python is there, else what is missing and how
    to get it; run with ``requires``, before a run trains."""


@dataclass(frozen=True)
class CallbackFactory(Component):
    """A training-callback factory, as ``register_callbacks`` registered it."""

    make: Callable[..., Any] = None  # type: ignore[assignment]
    """``make(config, run_dir) -> keras.callbacks.Callback | None``."""
    finish: Callable[..., Any] | None = None
    """``finish(result) -> None``, called once the run folder is complete (a tracker's upload)."""
    requires: tuple[str, ...] = ()
    """Modules it imports when the run names it in ``--track``, checked before any data is read."""
    install: str = ""
    """How to install ``requires`` (e.g. ``"pip install 'clf[mlflow]'"``), shown when one is missing."""


C = TypeVar("C", bound=Component)


@dataclass
class Registry(Generic[C]):
    """Components of one kind, by name and alias."""

    kind: str  # "backbone", used in messages
    list_command: str  # the CLI command that lists them, for "Run 'clf ...'"
    factory: type[C]
    _items: dict[str, C] = field(default_factory=dict)
    _aliases: dict[str, str] = field(default_factory=dict)

    def callback(self, plugin: str) -> Callable[..., C]:
        """The ``register`` function handed to one plugin's hook."""
        return functools.partial(self.add, plugin)

    def add(self, plugin: str, name: str, fn: Callable[..., Any], /, *, aliases: Iterable[str] = (),
            description: str | None = None, **extra: Any) -> C:
        """Register ``fn`` as component ``name`` of ``plugin``."""
        aliases = tuple(aliases)
        for n in (name, *aliases):
            if not isinstance(n, str) or not _NAME.match(n):
                raise PluginError(
                    f"Plugin {plugin!r} registered a {self.kind} named {n!r}; expected a "
                    f"lowercase name of letters, digits and '_' starting with a letter. "
                    f"Rename it in the plugin."
                )
            owner = self._owner(n)
            if owner is not None:
                raise PluginError(
                    f"{self.kind.capitalize()} {n!r} is provided by both plugin {owner!r} and "
                    f"plugin {plugin!r}; expected each name once. Uninstall or rename one of "
                    f"them (or block one with CLF_LOAD_PLUGINS)."
                )
        if not callable(fn):
            raise PluginError(
                f"Plugin {plugin!r} registered {self.kind} {name!r} with {fn!r}, which is not "
                f"callable; expected a function. Pass the function itself."
            )
        if self.factory is Backbone and "preprocess" in extra:
            extra["preprocess"] = _preprocess_mode(plugin, name, extra["preprocess"])
        try:
            item = self.factory(
                name=name, plugin=plugin, aliases=aliases,
                description=description or next(iter((fn.__doc__ or "").strip().splitlines()), ""),
                **{_FN_FIELD[self.factory]: fn}, **extra,
            )
        except TypeError as exc:
            raise PluginError(
                f"Plugin {plugin!r} registered {self.kind} {name!r} with unexpected options: "
                f"{exc}. See the hook's docstring in clf.hookspecs for the accepted ones."
            ) from None
        self._items[name] = item
        for a in aliases:
            self._aliases[a] = name
        return item

    def _owner(self, name: str) -> str | None:
        item = self._items.get(self._aliases.get(name, name))
        return item.plugin if item else None

    def get(self, name: str) -> C:
        key = name.strip().lower().replace("-", "_")
        key = self._aliases.get(key, key)
        try:
            return self._items[key]
        except KeyError:
            raise UnknownComponentError(self.kind, name, self.names(), self.list_command,
                                        aliases=sorted(self._aliases)) from None

    def remove_plugin(self, plugin: str) -> None:
        for name in [n for n, c in self._items.items() if c.plugin == plugin]:
            del self._items[name]
        self._aliases = {a: n for a, n in self._aliases.items() if n in self._items}

    def names(self) -> list[str]:
        return sorted(self._items)

    def __iter__(self) -> Iterator[C]:
        return iter(self._items[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: str) -> bool:
        return self._owner(name) is not None


_FN_FIELD = {Backbone: "build", Head: "build", DataLoader: "load", Exporter: "export",
             CallbackFactory: "make"}


def _preprocess_mode(plugin: str, backbone: str, preprocess: Any) -> str:
    """The preprocessing mode name saved models carry; a function is registered as
    ``<plugin>.<backbone>``, so models reload wherever that plugin is loaded."""
    if isinstance(preprocess, str):
        return preprocess
    if callable(preprocess):
        from clf.data.modes import register_preprocess

        stem = Path(plugin).stem if plugin.endswith(".py") else plugin
        mode = f"{stem}.{backbone}"
        register_preprocess(mode, preprocess, replace=True)
        return mode
    raise PluginError(
        f"Plugin {plugin!r} registered backbone {backbone!r} with preprocess={preprocess!r}; "
        f"expected a mode name (see clf.register_preprocess) or a function fn(x) -> x taking "
        f"RGB 0-255 images. Fix the plugin's register call."
    )
