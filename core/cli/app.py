"""Shared pieces of the ``clf`` command: the typer app, the two consoles, option objects,
and helpers to load plugins, fail with an exit code and render progress."""

from __future__ import annotations

import copy
import errno
import functools
import inspect
import json
import logging
from typing import TYPE_CHECKING, Any, Callable, Iterable, NoReturn, Sequence

import typer
from clf import logs
from clf.cli.render import (LOG_FORMATS, cross_validation_tables, esc, make_observer, print_report,
                            resolved_format)
from clf.errors import ClfError, UsageError
from clf.events import Observer
from clf.report.history import TeeObserver
from rich.console import Console

if TYPE_CHECKING:
    from clf.host.manager import PluginHost
    from typer.models import CommandInfo, TyperInfo

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train image classifiers by transfer learning, built from plugins.")
# emoji=False: a class called ':cat:' stays ':cat:'.
out = Console(emoji=False)
err = Console(stderr=True, emoji=False)

PluginOpt = typer.Option(None, "--plugin", "-p", help="Extra plugin: module name or .py file (repeatable).")
TrustOpt = typer.Option(False, "--trust-artifact", help="Open the model even if its sha256 is not the one "
                        "recorded at export (models run native code: only for files you trust).")

VerboseOpt = typer.Option(
    False, "--verbose",
    help="Show TensorFlow's own log lines (import messages, absl warnings, TFLite's delegate "
         "notes), which clf hides by default (also: CLF_DEBUG=1).")


def _verbose(on: bool) -> None:
    """--verbose shows TensorFlow's log lines; runs before TensorFlow is imported, as the settings require."""
    if on:
        logs.set_verbose()
    logs.quiet_tensorflow()


# Set by the app callback for the one command being run: --strict-plugins.
_options: dict[str, bool | None] = {"strict_plugins": None}


@app.callback()
def _global_options(
    strict_plugins: bool = typer.Option(
        False, "--strict-plugins",
        help="A broken installed plugin is an error instead of a skipped-with-a-warning one "
             "(also: CLF_STRICT_PLUGINS=1)."),
    verbose: bool = VerboseOpt,
) -> None:
    # Global options, given before the command: clf --strict-plugins run ...
    _options["strict_plugins"] = True if strict_plugins else None  # None: CLF_STRICT_PLUGINS decides
    _verbose(verbose)
    from clf.host.manager import ENV_TRACE, env_flag

    # The plugin host's trace records (logger 'clf.plugins') to stderr, once.
    logger = logging.getLogger("clf.plugins")
    if env_flag(ENV_TRACE) and not any(isinstance(h, _ErrHandler) for h in logger.handlers):
        logger.addHandler(_ErrHandler())
        logger.setLevel(logging.INFO)


class _ErrHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        # Through the rich console, which looks up sys.stderr at print time (CliRunner too).
        err.print(f"plugin trace: {record.getMessage()}", highlight=False, markup=False, soft_wrap=True)


def _host(plugins: Sequence[str] | None) -> PluginHost:
    from clf.host.manager import get_host

    host = get_host(plugins or (), strict=_options["strict_plugins"])
    for line in host.warnings:  # one line per broken plugin; everything else goes on
        err.print(f"[yellow]warning:[/] {esc(line)}", highlight=False, soft_wrap=True)
    return host


def _notes(notes: Iterable[str]) -> None:
    """What the user should know (a fallback taken, a file skipped), one line each on stderr."""
    for note in notes:
        err.print(f"[yellow]note:[/] {esc(note)}", highlight=False, soft_wrap=True)


def _fail(exc: ClfError) -> NoReturn:
    """Close the open observers (their bars end first), print ``exc``, exit with its code."""
    while _open:
        _close(_open[-1])
    # The message carries paths, class names and values from the user: never markup.
    err.print(f"[bold red]Error:[/] {esc(exc)}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(exc.exit_code)


class _Stopped(ClfError):
    exit_code = 130


class PhaseTracker(TeeObserver):
    """Forwards to ``inner`` and remembers the running phase for Ctrl-C's message; phases nest,
    so the innermost unfinished counts."""

    def __init__(self, inner: Observer) -> None:
        super().__init__(inner)
        self.inner = inner
        self.running: list[str] = []

    def __getattr__(self, name: str) -> Any:  # close(), and anything else the renderer has
        return getattr(self.inner, name)

    @property
    def phase(self) -> str | None:
        return self.running[-1] if self.running else None

    def phase_start(self, phase: str, total: int | None = None, unit: str = "") -> None:
        self.running.append(phase)
        super().phase_start(phase, total, unit)

    def phase_end(self, phase: str, **info: Any) -> None:
        if phase in self.running:
            self.running.remove(phase)
        super().phase_end(phase, **info)


LogFormatOpt = typer.Option("auto", "--log-format", help="auto (rich bars on a terminal, plain lines otherwise), rich, plain or jsonl.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="Print only notes, errors and the final line.")


def _observer(log_format: str, quiet: bool) -> PhaseTracker:
    if log_format not in LOG_FORMATS:
        _fail(UsageError(f"Invalid --log-format {log_format!r}: expected one of {', '.join(LOG_FORMATS)}. "
                         f"Pass one of them."))
    observer = PhaseTracker(make_observer(out, log_format, quiet))
    _open.append(observer)  # so that an error in its command closes it before the message
    return observer


def _close(observer: Observer | None) -> None:
    _open[:] = [o for o in _open if o is not observer]
    close = getattr(observer, "close", None)
    if close is not None:
        close()


# The observers the running command opened and has not closed yet (closed on an error).
_open: list[Observer] = []


def cli_errors(interrupt: bool = False, run_dir: tuple[str, ...] = (),
               write_errors: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The one error path of every command (apply under ``@app.command()``): a ClfError closes
    the open observers and fails with its message and exit code. ``interrupt``: Ctrl-C says
    where it stopped (and what the ``run_dir`` option's folder keeps) and exits 130.
    ``write_errors``: an OSError is one line, no traceback."""

    def wrap(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command)

        @functools.wraps(command)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            _open.clear()
            try:
                return command(*args, **kwargs)
            except ClfError as exc:
                _fail(exc)
            except KeyboardInterrupt:
                if not interrupt:
                    raise
                # Ctrl-C outside training (which saves and says so itself): say where it stopped.
                phase = getattr(_open[-1], "phase", None) if _open else None
                given = signature.bind_partial(*args, **kwargs).arguments
                folder = next((given[name] for name in run_dir if given.get(name)), None)
                hint = ""
                if folder:
                    from clf.train.checkpoint import latest

                    done = latest(folder)
                    hint = (f"Epoch {done.epoch} is saved; continue with: clf run --resume {folder}"
                            if done is not None else "Nothing was saved to resume from; start the run again.")
                _fail(_Stopped(f"Interrupted (Ctrl-C) during {phase or 'startup'}. {hint}".strip()))
            except OSError as exc:
                if not write_errors:
                    raise
                # One line, no traceback; a full disk says how to go on.
                where = f" ({exc.filename})" if exc.filename else ""
                if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                    _fail(ClfError(f"No space left to write{where}: {exc.strerror}. Nothing half-written was "
                                   f"kept. Free some space, then continue a run with: clf run --resume RUN_FOLDER"))
                _fail(ClfError(f"Cannot read or write{where}: {exc.strerror or exc}. Check the path and its "
                               f"permissions."))

        return guarded

    return wrap


def _print_reports(reports: dict, log_format: str, quiet: bool,
                   cross_validation: dict | None = None) -> None:
    fmt = resolved_format(out, log_format, quiet)
    if fmt == "jsonl":
        extra = {"cross_validation": cross_validation} if cross_validation else {}
        print(json.dumps({"event": "report", "reports": reports, **extra}, default=str), flush=True)
    elif fmt != "quiet":
        for name, report in reports.items():
            print_report(out, report, name)
        if cross_validation:
            for item in cross_validation_tables(cross_validation):
                out.print(item, highlight=False, soft_wrap=isinstance(item, str))


JsonOpt = typer.Option(False, "--json", help="Print JSON instead of a table.")


# --help's word for each option's value instead of typer's type tags; commands add ``callback.metavars``.
METAVARS = {
    "config_file": "FILE", "backbone": "NAME", "head": "NAME", "loader": "NAME", "data": "DIR",
    "quantize": "none|float16|dynamic|int8", "plugin": "MODULE|FILE", "log_format": "auto|rich|plain|jsonl",
    "export": "NAMES", "batch_size": "N", "top_k": "K", "output": "PATH", "fmt": "table|csv|json",
}


def _show_help(ctx: typer.Context, value: bool) -> None:
    if value:
        typer.echo(ctx.get_help(), color=ctx.color)
        raise typer.Exit()


def tidy_help(info: CommandInfo | TyperInfo) -> None:
    """Tidy a command's --help: a word per value instead of a type tag, the panels of
    ``callback.help_panels``, and our own --help. Typer reads options from the signature, so the
    callback is wrapped with one listing copied (shared) options in panel order, plus --help."""
    from typer.models import OptionInfo

    callback = info.callback
    assert callback is not None  # every command, and the app's callback, has one
    panels = getattr(callback, "help_panels", {})
    metavars = {**METAVARS, **getattr(callback, "metavars", {})}
    panel_of = {name: panel for panel, names in panels.items() for name in names}
    order = {name: i for i, name in enumerate(n for names in panels.values() for n in names)}
    signature = inspect.signature(callback)
    params = []
    for param in signature.parameters.values():
        if isinstance(param.default, OptionInfo):
            option = copy.copy(param.default)
            option.rich_help_panel = option.rich_help_panel or panel_of.get(param.name)
            flag = param.annotation in (bool, "bool")
            option.metavar = "" if flag else metavars.get(param.name, option.metavar or param.name.upper())
            param = param.replace(default=option)
        params.append(param)
    params.append(inspect.Parameter(
        "help", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
        default=typer.Option(False, "--help", is_eager=True, expose_value=False, callback=_show_help, metavar="",
                             rich_help_panel=panel_of.get("help"), help="Show this message and exit.")))
    params.sort(key=lambda p: (p.kind == p.KEYWORD_ONLY, order.get(p.name, -1)))

    @functools.wraps(callback)
    def tidied(*args: Any, **kwargs: Any) -> Any:
        kwargs.pop("help", None)  # handled eagerly by _show_help
        return callback(*args, **kwargs)

    tidied.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]  # read by inspect; not in the stubs
    info.callback = tidied
    info.add_help_option = False
