"""Loads plugins (built-in, installed, named on the command line) and fills the registries.
Built-in plugins take the same path as third-party ones; only their origin differs."""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as md
import importlib.util
import inspect
import logging
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pluggy

from clf import __version__, hookspecs
from clf.errors import PluginError, PluginNotFoundError
from clf.host.registry import Backbone, CallbackFactory, DataLoader, Exporter, Head, Registry

ENTRY_POINT_GROUP = "clf"

BUILTIN_PLUGINS = tuple(f"clf.plugins.{name}" for name in (
    "keras_applications", "heads", "directory_loader", "labels_file_loader", "h5_exporter", "tensorboard_callback",
    "keras_exporter", "savedmodel_exporter", "tflite_exporter", "onnx_exporter", "mlflow_tracker",
    "mediapipe_exporter", "web_exporter",
))

# hook name -> (registry attribute, component class, kind, listing command)
HOOKS = {
    "register_backbones": ("backbones", Backbone, "backbone", "backbones"),
    "register_heads": ("heads", Head, "head", "heads"),
    "register_data_loaders": ("loaders", DataLoader, "data loader", "loaders"),
    "register_exporters": ("exporters", Exporter, "exporter", "exporters"),
    "register_callbacks": ("callbacks", CallbackFactory, "callback", "plugins"),
}


ENV_STRICT = "CLF_STRICT_PLUGINS"  # 1: a broken installed plugin is an error, not a warning
ENV_LOAD = "CLF_LOAD_PLUGINS"  # name1,name2: load only these installed plugins; empty: none
ENV_TRACE = "CLF_TRACE_PLUGINS"  # 1: log each hook call to the 'clf.plugins' logger

# traced through logging: the engine never prints
log = logging.getLogger("clf.plugins")


@dataclass
class PluginInfo:
    name: str
    origin: str  # "builtin", "entrypoint", "module", "file" or "object"
    distribution: str | None = None
    version: str | None = None
    hooks: list[str] = field(default_factory=list)
    components: dict[str, list[str]] = field(default_factory=dict)
    module: str | None = None  # the entry point's target ("pkg.module"), when there is one

    @property
    def builtin(self) -> bool:
        return self.origin == "builtin"


@dataclass(frozen=True)
class SkippedPlugin:
    """An installed plugin that failed to import or to register, and was left out."""

    name: str
    error: str  # one line: what happened, what was expected, how to fix
    distribution: str | None = None
    version: str | None = None
    module: str | None = None

    @property
    def line(self) -> str:
        source = f" ({' '.join(filter(None, (self.distribution, self.version)))})" if self.distribution else ""
        return f"skipped plugin {self.name!r}{source}: {self.error}"


@dataclass(frozen=True)
class PluginSettings:
    """How installed plugins are loaded; each field defaults to its environment variable."""

    strict: bool = False
    only: frozenset[str] | None = None  # normalised names; None: every installed plugin
    trace: bool = False

    @classmethod
    def resolve(cls, strict: bool | None = None, only: Iterable[str] | str | None = None,
                trace: bool | None = None) -> "PluginSettings":
        only = os.environ.get(ENV_LOAD) if only is None else only
        if isinstance(only, str):
            only = only.split(",")
        return cls(
            strict=env_flag(ENV_STRICT) if strict is None else bool(strict),
            only=None if only is None else frozenset(normalise(n) for n in only if n.strip()),
            trace=env_flag(ENV_TRACE) if trace is None else bool(trace),
        )


def normalise(name: str) -> str:
    """Entry-point and distribution names compared as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


class PluginHost:
    """One plugin manager plus the registries its hooks filled."""

    backbones: Registry[Backbone]
    heads: Registry[Head]
    loaders: Registry[DataLoader]
    exporters: Registry[Exporter]
    callbacks: Registry[CallbackFactory]

    def __init__(self, plugins: Iterable[str] = (), *, entry_points: bool = True,
                 strict: bool | None = None, only: Iterable[str] | str | None = None,
                 trace: bool | None = None) -> None:
        """``strict``, ``only`` and ``trace`` default to CLF_STRICT_PLUGINS, CLF_LOAD_PLUGINS and
        CLF_TRACE_PLUGINS. Built-ins and ``plugins`` raise on failure; failing installed plugins
        are recorded in ``skipped`` unless ``strict``."""
        self.settings = PluginSettings.resolve(strict, only, trace)
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self.skipped: list[SkippedPlugin] = []
        self.notes: list[str] = []  # other one-line warnings (e.g. an unknown CLF_LOAD_PLUGINS name)
        for attr, cls, kind, command in HOOKS.values():
            setattr(self, attr, Registry(kind, command, cls))

        for module_name in BUILTIN_PLUGINS:
            self.register(importlib.import_module(module_name), name=module_name,
                          origin="builtin", distribution="clf", version=__version__)
        if entry_points:
            self._load_entry_points()
        for spec in plugins:
            self.load(spec)

    @property
    def warnings(self) -> list[str]:
        """One line per problem with installed plugins, for the CLI to print."""
        return [s.line for s in self.skipped] + list(self.notes)

    # -- loading -------------------------------------------------------------------------
    def _load_entry_points(self) -> None:
        eps = sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
        only = self.settings.only
        if only is not None:
            known = {normalise(ep.name) for ep in eps} | {normalise(ep.dist.name) for ep in eps if ep.dist}
            for name in sorted(only - known):
                self.notes.append(
                    f"{ENV_LOAD} names {name!r}, which is no installed clf plugin (installed: "
                    f"{', '.join(sorted({ep.name for ep in eps})) or 'none'}); check the spelling."
                )
        for ep in eps:
            dist, version = (ep.dist.name, ep.dist.version) if ep.dist else (None, None)
            if only is not None and normalise(ep.name) not in only and normalise(dist or "") not in only:
                self._trace("not loading plugin %r (%s): not named in %s", ep.name, dist, ENV_LOAD)
                continue
            self._trace("loading plugin %r = %s from %s %s", ep.name, ep.value, dist, version)
            try:
                try:
                    obj = ep.load()
                except Exception as exc:
                    raise PluginError(
                        f"Plugin {ep.name!r} ({ep.value}) failed to import: "
                        f"{type(exc).__name__}: {exc}. Fix or uninstall its package"
                        f"{' ' + repr(dist) if dist else ''}."
                    ) from exc
                info = self.register(obj, name=ep.name, origin="entrypoint",
                                     distribution=dist, version=version)
            except PluginError as exc:
                if self.settings.strict:
                    raise PluginError(
                        f"{exc} (Strict plugin loading is on: {ENV_STRICT}=1 or --strict-plugins; "
                        f"without it clf skips this plugin with a warning.)"
                    ) from exc
                one_line = " ".join(str(exc).split())
                self.skipped.append(SkippedPlugin(ep.name, one_line, dist, version, ep.value))
                self._trace("skipped plugin %r: %s", ep.name, exc)
                continue
            info.module = ep.value
            if not info.hooks:
                self.notes.append(
                    f"Plugin {ep.name!r} ({ep.value}) implements no clf hook; expected functions "
                    f"marked @clf.hookimpl named {', '.join(HOOKS)}. It registers nothing."
                )

    def _trace(self, message: str, *args: Any) -> None:
        if self.settings.trace:
            log.info(message, *args)

    def load(self, spec: str) -> PluginInfo:
        """Load an unpackaged plugin: a module name or a path to a ``.py`` file."""
        path = Path(spec)
        if spec.endswith(".py") or path.is_file():
            if not path.is_file():
                raise PluginNotFoundError(
                    f"Plugin file {spec!r} does not exist; expected a path to a .py file or "
                    f"an importable module name. Check the --plugin value."
                )
            name = f"clf_plugin_{path.stem}"
            module_spec = importlib.util.spec_from_file_location(name, path)
            if module_spec is None or module_spec.loader is None:
                raise PluginError(f"Cannot import plugin file {str(path)!r}; expected a Python "
                                  f"file.")
            module = sys.modules[name] = importlib.util.module_from_spec(module_spec)
            try:
                module_spec.loader.exec_module(module)
            except Exception as exc:
                del sys.modules[name]
                raise PluginError(
                    f"Plugin file {str(path)!r} failed to import: {type(exc).__name__}: {exc}. "
                    f"Fix the file."
                ) from exc
            return self.register(module, name=str(path), origin="file")
        try:
            module = importlib.import_module(spec)
        except ImportError as exc:
            # the module missing is a typo (exit 2); an error inside it is a broken plugin
            missing = isinstance(exc, ModuleNotFoundError) and exc.name and \
                (spec == exc.name or spec.startswith(exc.name + "."))
            raise (PluginNotFoundError if missing else PluginError)(
                f"Plugin module {spec!r} could not be imported ({exc}); expected an "
                f"importable module name or a path to a .py file. Check the --plugin value "
                f"and that the module is on PYTHONPATH."
            ) from exc
        return self.register(module, name=spec, origin="module")

    def register(self, plugin: Any, *, name: str | None = None, origin: str = "object",
                 distribution: str | None = None, version: str | None = None) -> PluginInfo:
        """Register one plugin object (module, class or instance) and collect its components."""
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        if self.pm.has_plugin(name):
            raise PluginError(
                f"A plugin named {name!r} is already registered; expected unique plugin "
                f"names. Give the second one another name."
            )
        check_hookimpls(self.pm, plugin, name)
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            detail = " ".join(str(exc).split("\n")[1:]) or str(exc)
            raise PluginError(
                f"Plugin {name!r} has an invalid hook implementation: {detail} Expected the "
                f"hook's own arguments (each hook takes 'register'); see clf.hookspecs."
            ) from None
        info = PluginInfo(name, origin, distribution, version)
        self.infos[name] = info
        try:
            self._collect(name)
        except BaseException:
            self.unregister(name)
            raise
        return info

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self.infos.pop(name, None)
        for attr, *_ in HOOKS.values():
            getattr(self, attr).remove_plugin(name)

    def _collect(self, plugin_name: str) -> None:
        """Call each hook of one plugin with a register callback that records the plugin."""
        plugin = self.pm.get_plugin(plugin_name)
        info = self.infos[plugin_name]
        for hook_name, (attr, *_rest) in HOOKS.items():
            impls = getattr(self.pm.hook, hook_name).get_hookimpls()
            for impl in [i for i in impls if i.plugin is plugin]:
                registry = getattr(self, attr)
                before = set(registry.names())
                kwargs = {"register": registry.callback(plugin_name)}
                self._trace("hook %s: calling plugin %r", hook_name, plugin_name)
                t0 = time.perf_counter()
                try:
                    impl.function(*(kwargs[a] for a in impl.argnames))
                except PluginError as exc:
                    raise PluginError(f"{exc} (in hook {hook_name!r} of plugin {plugin_name!r})") from exc
                except Exception as exc:
                    raise PluginError(
                        f"Plugin {plugin_name!r} raised {type(exc).__name__} in hook "
                        f"{hook_name!r}: {exc}. Fix the plugin or uninstall it."
                    ) from exc
                info.hooks.append(hook_name)
                info.components[attr] = sorted(set(registry.names()) - before)
                self._trace("hook %s: plugin %r registered %s in %.1f ms", hook_name, plugin_name,
                            ", ".join(info.components[attr]) or "nothing",
                            (time.perf_counter() - t0) * 1e3)


# Checked before pluggy does: its errors name neither the plugin nor what to write instead.
def check_hookimpls(pm: pluggy.PluginManager, plugin: Any, plugin_name: str) -> None:
    """Raise PluginError for a misspelled hook, a wrong argument or a forgotten marker."""
    # every name is a clf hookspec (added before any plugin), so each has a spec
    hooks = {name: list(getattr(pm.hook, name).spec.argnames) for name in HOOKS}
    marked = set()
    for attr in dir(plugin):
        if attr.startswith("__"):
            continue
        try:
            opts = pm.parse_hookimpl_opts(plugin, attr)
        except Exception:  # uninspectable: not a hook implementation
            opts = None
        if opts is None:
            continue
        hook = opts.get("specname") or attr
        marked.add(hook)
        if hook not in hooks:
            if opts.get("optionalhook"):
                continue
            guess = difflib.get_close_matches(hook, list(hooks), n=1)
            hint = f"Did you mean {guess[0]!r}?" if guess else "Rename it to one of them."
            raise PluginError(
                f"Plugin {plugin_name!r} implements unknown hook {hook!r}; expected one of "
                f"{', '.join(hooks)}. {hint}"
            )
        args = _impl_args(getattr(plugin, attr))
        wrong = [a for a in args if a not in hooks[hook]]
        if wrong:
            raise PluginError(
                f"Plugin {plugin_name!r} implements hook {hook!r} with argument "
                f"{wrong[0]!r}, which the hook does not have; expected "
                f"{hook}({', '.join(hooks[hook])}). Rename the argument to {hooks[hook][0]!r}."
            )
    for hook in hooks:
        if hook not in marked and callable(getattr(plugin, hook, None)):
            raise PluginError(
                f"Plugin {plugin_name!r} defines {hook!r} but it is not marked as a hook "
                f"implementation, so clf would never call it; expected '@clf.hookimpl' above "
                f"it. Add the decorator (from clf import hookimpl)."
            )


def _impl_args(fn: Any) -> list[str]:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return []
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    # a class registered as the plugin: its functions keep 'self'
    return [n for n in names if n not in ("self", "cls")]


# What clf plugins shows: loaded plugins (built-ins marked) and skipped ones; the table names
# at most SHOWN components per kind (--json all)
SHOWN = 6


def plugin_rows(host: PluginHost) -> list[dict[str, Any]]:
    """One record per plugin, loaded or skipped, for ``clf plugins --json``."""
    rows = [{"name": i.name, "status": "loaded", "origin": i.origin, "builtin": i.builtin,
             "distribution": i.distribution, "version": i.version, "module": i.module or
             (i.name if i.origin in ("builtin", "module") else None),
             "hooks": list(i.hooks), "components": {k: list(v) for k, v in i.components.items()},
             "error": None} for i in host.infos.values()]
    rows += [{"name": s.name, "status": "skipped", "origin": "entrypoint", "builtin": False,
              "distribution": s.distribution, "version": s.version, "module": s.module,
              "hooks": [], "components": {}, "error": s.error} for s in host.skipped]
    return rows


TABLE_COLUMNS = ["plugin", "distribution", "hooks", "registered"]
_ORIGIN = {"builtin": "built-in", "entrypoint": "installed", "module": "--plugin module",
           "file": "--plugin file", "object": "registered in code"}


def plugin_table_rows(host: PluginHost) -> list[list[str]]:
    """Rows for TABLE_COLUMNS: the plugin cell says where it came from on a second line."""
    rows = []
    for r in plugin_rows(host):
        name = r["name"].removeprefix("clf.plugins.") if r["builtin"] else r["name"]
        if r["origin"] == "file":
            name = Path(name).name  # --json has the whole path
        name += f"\n({_ORIGIN.get(r['origin'], r['origin'])})"
        dist = f"{r['distribution'] or '-'} {r['version'] or ''}".strip()
        if r["status"] == "skipped":
            # the full error is printed above the table
            rows.append([name, dist, "-", f"SKIPPED: {r['error'].split(';')[0]}"])
            continue
        registered = "; ".join(f"{kind}: {_names(names)}" for kind, names in r["components"].items())
        rows.append([name, dist, "\n".join(r["hooks"]), registered or "-"])
    return rows


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return f"{shown}, ... ({len(names)} in all)" if len(names) > SHOWN else shown


_default_host: PluginHost | None = None


def get_host(plugins: Iterable[str] = (), *, strict: bool | None = None) -> PluginHost:
    """The process-wide host plus any extra ``plugins``; rebuilt when the loading settings changed."""
    global _default_host
    if _default_host is None or _default_host.settings != PluginSettings.resolve(strict):
        _default_host = PluginHost(strict=strict)
    for spec in plugins:
        if spec not in _default_host.infos and str(Path(spec)) not in _default_host.infos:
            _default_host.load(spec)
    return _default_host


def reset_host() -> None:
    """Forget the process-wide host (tests, or after installing a plugin)."""
    global _default_host
    _default_host = None
