"""Hook templating: Jinja2 with strict undefined variables and shell quoting by default.

Every ``{{ expression }}`` in a hook command is shell-quoted when it is rendered, so a variable holding
``a b; rm -rf /`` arrives as one harmless argument. ``{{ value | raw }}`` opts out, for the rare value
that is itself meant to be shell syntax. URLs and other non-shell strings render without quoting.
"""

from __future__ import annotations

import functools
import shlex
from collections.abc import Mapping
from typing import Any

import jinja2
import jinja2.meta
import jinja2.sandbox

from slipway.errors import ConfigError


class Raw(str):
    """A string the shell renderer passes through unquoted."""

    __slots__ = ()


def _finalize_shell(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, bool):
        value = "true" if value else "false"
    return shlex.quote(str(value))


def _raw(value: Any) -> Raw:
    return Raw(str(value))


def _make_env(*, shell: bool) -> jinja2.Environment:
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
        finalize=_finalize_shell if shell else None,
    )
    env.filters["raw"] = _raw
    env.filters["quote"] = lambda v: Raw(shlex.quote(str(v)))
    return env


_SHELL = _make_env(shell=True)
_PLAIN = _make_env(shell=False)


@functools.lru_cache(maxsize=1024)
def _compiled(template: str, shell: bool) -> jinja2.Template:
    """Compile once: a fleet renders the same hooks for every host, and compiling is most of rendering."""
    return (_SHELL if shell else _PLAIN).from_string(template)


def render(template: str, context: Mapping[str, Any], *, shell: bool = True, where: str = "") -> str:
    """Render ``template``; an undefined variable or a syntax error is a ConfigError naming ``where``."""
    try:
        return _compiled(template, shell).render(**context)
    except jinja2.UndefinedError as exc:
        names = ", ".join(sorted(context))
        raise ConfigError(
            f"{exc.message} in {template!r}",
            key_path=where or None,
            hint=f"variables available here: {names}; environment and host values are under 'vars'",
        ) from None
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"template syntax error: {exc.message} in {template!r}", key_path=where or None) from None
    except jinja2.TemplateError as exc:
        raise ConfigError(f"cannot render {template!r}: {exc}", key_path=where or None) from None


def uses_variable(template: str, name: str) -> bool:
    """Whether ``template`` reads the variable ``name`` (``{{ review.number }}`` reads ``review``); a syntax
    error is a ConfigError, as when rendering."""
    if "{" not in template:
        return False
    try:
        return name in jinja2.meta.find_undeclared_variables(_PLAIN.parse(template))
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"template syntax error: {exc.message} in {template!r}") from None
