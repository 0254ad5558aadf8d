"""A merge request's review environment made from the ``review:`` template: pure, the template engine is
passed in (services/review_env.py passes Jinja2's, as for every other template).

``vars`` are filled in first, with ``review``; every other value then sees ``review`` and those ``vars``.
A string that does not use ``review`` is left as written: the URL, hooks, checks and database URL are
rendered later with the environment's vars, hosts and release, as for every environment.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from slipway.errors import ConfigError
from slipway.model.config import Environment
from slipway.model.review import ReviewTemplate, review_context

#: (template, context, where) -> the text; ``where`` is the key path an error names.
Renderer = Callable[[str, Mapping[str, Any], str], str]


def materialise(template: ReviewTemplate, *, number: int, branch: str, render: Renderer) -> Environment:
    """The environment ``review-<N>`` of merge request ``number``; ConfigError naming the key on a mistake."""
    if number < 1:
        raise ConfigError(f"merge request number {number} must be 1 or more", hint="pass the request's number")
    review = review_context(number, branch)
    raw = template.environment
    variables = _fill(raw.get("vars", {}), {"review": review}, "review.vars", render)
    context = {"review": review, "vars": variables}
    data = {key: _fill(value, context, f"review.{key}", render) for key, value in raw.items() if key != "vars"}
    data["vars"] = variables
    try:
        return Environment.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in ("review", *err["loc"]))
        message = str(err["msg"]).removeprefix("Value error, ")
        raise ConfigError(
            f"the review template filled in for request {number} is not a valid environment: {message}",
            key_path=where,
            hint="docs/config.md, 'review', lists the keys; {{ review.number }} is filled in before the check",
        ) from None


def _fill(value: Any, context: Mapping[str, Any], where: str, render: Renderer) -> Any:
    """``value`` with every string rendered (a mapping's keys stay as written)."""
    if isinstance(value, str):
        return render(value, context, where)
    if isinstance(value, Mapping):
        return {k: _fill(v, context, f"{where}.{k}", render) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_fill(v, context, f"{where}[{i}]", render) for i, v in enumerate(value)]
    return value
