"""Checks a plugin's hook implementations before pluggy does, because pluggy's errors are hard
to act on: these name the plugin, hook and argument, and say what to write instead."""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Iterable

import pluggy

from clf.errors import PluginError


def check_hookimpls(pm: pluggy.PluginManager, plugin: Any, plugin_name: str, hook_names: Iterable[str]) -> None:
    """Raise PluginError for a misspelled hook, a wrong argument or a forgotten marker."""
    # every name is a clf hookspec (added before any plugin), so each has a spec
    hooks = {name: list(getattr(pm.hook, name).spec.argnames) for name in hook_names}
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
            expected = ", ".join(hooks[hook])
            raise PluginError(
                f"Plugin {plugin_name!r} implements hook {hook!r} with argument "
                f"{wrong[0]!r}, which the hook does not have; expected {hook}({expected}). "
                f"Rename the argument to {hooks[hook][0]!r}."
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
