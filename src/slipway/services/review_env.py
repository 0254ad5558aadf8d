"""The review environment of a merge request as the rest of Slipway sees it: one more environment of the
run's configuration, ``review-<N>``, made from the ``review:`` template (model/review_environment.py).

A merge-request run's LoadedConfig includes it (:func:`run_config_of`), so every stage handler, deployment
kind, check and migration finds it in ``project.environments`` like any other environment.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from slipway.config import LoadedConfig
from slipway.engine.planner import ReleaseInfo, template_context
from slipway.engine.template import render, uses_variable
from slipway.errors import ConfigError
from slipway.model.config import Environment, LocalTargetSpec, Project, SSHTargetSpec
from slipway.model.records import RunRecord
from slipway.model.review import SAMPLE_NUMBER, review_context, review_name
from slipway.model.review_environment import materialise
from slipway.services.app import App, target_root
from slipway.services.releases import environment_url, hosts_of


def render_review_value(template: str, context: Mapping[str, Any], where: str) -> str:
    """A template value filled in with ``review`` (and ``vars``) when it uses ``review``; else as written."""
    try:
        if not uses_variable(template, "review"):
            return template
    except ConfigError as exc:
        raise ConfigError(exc.reason, key_path=where) from None
    return render(template, context, shell=False, where=where)


def review_environment(project: Project, number: int, *, branch: str = "") -> Environment:
    """The environment ``review-<N>`` of merge request ``number``, from ``project``'s ``review:`` template."""
    if project.review is None:
        raise ConfigError(
            "slipway.yml has no 'review:' template",
            hint="add a review: block (docs/config.md, 'review') to deploy merge requests to review environments",
        )
    return materialise(project.review, number=number, branch=branch, render=render_review_value)


def with_review(loaded: LoadedConfig, number: int, *, branch: str = "") -> LoadedConfig:
    """``loaded`` with the review environment of request ``number`` among its environments."""
    env = review_environment(loaded.project, number, branch=branch)
    environments = {**loaded.project.environments, review_name(number): env}
    return replace(loaded, project=loaded.project.model_copy(update={"environments": environments}))


def run_config_of(app: App, run: RunRecord) -> LoadedConfig:
    """The configuration ``run`` started with; a merge-request run's includes its review environment."""
    loaded = app.config_of(run.config_text, run.config_path)
    if run.merge_request is None or loaded.project.review is None:
        return loaded
    record = app.store.get_review(run.project, run.merge_request)
    return with_review(loaded, run.merge_request, branch=record.branch if record else "")


def check_template(loaded: LoadedConfig) -> None:
    """What loading slipway.yml cannot check without filling the template in (``slipway validate`` and each
    merge request do): it makes a valid environment, whose deploy roots and SQLite file differ per request
    and are none of another environment's, on local or SSH targets, with a database when there are migrations."""
    project = loaded.project
    if project.review is None:
        return
    one, two = (with_review(loaded, n).project for n in (SAMPLE_NUMBER, SAMPLE_NUMBER + 1))
    name = review_name(SAMPLE_NUMBER)
    env = one.environments[name]
    for i, spec in enumerate(env.targets):
        if not isinstance(spec, LocalTargetSpec | SSHTargetSpec):
            raise ConfigError(
                f"a review environment cannot use {spec.kind} targets", key_path=f"review.targets[{i}].kind",
                hint="review environments deploy release directories to local or ssh targets",
            )
    others = two.environments[review_name(SAMPLE_NUMBER + 1)].targets
    for i, (spec, other) in enumerate(zip(env.targets, others, strict=True)):
        root = _root(loaded, spec)
        if root == _root(loaded, other):
            raise ConfigError(
                f"the deploy root {root[1]} is the same for every merge request", key_path=f"review.targets[{i}].path",
                hint="put {{ review.number }} (or {{ review.name }}) in the path: each review environment is removed "
                "with its deploy root",
            )
        if (overlap := overlapping_root(replace(loaded, project=one), name, spec)) is not None:
            raise ConfigError(
                f"the deploy root {root[1]} overlaps environment {overlap}'s", key_path=f"review.targets[{i}].path",
                hint="give review environments deploy roots of their own, e.g. .slipway/targets/review-{{ review.number }}",
            )
    _check_database(loaded, one, two)


def _check_database(loaded: LoadedConfig, one: Project, two: Project) -> None:
    env = one.environments[review_name(SAMPLE_NUMBER)]
    if env.database is None:
        if loaded.project.migrations is not None:
            raise ConfigError(
                "'migrations' is set but the review template has no database to run them on", key_path="review",
                hint="add 'database: {url: \"sqlite:///.slipway/targets/review-{{ review.number }}/app.db\"}'",
            )
        return
    if env.database.secret is not None and env.database.secret not in env.secrets:
        raise ConfigError(
            f"secret {env.database.secret!r} is not defined in the review template", key_path="review.database.secret",
            hint="add it under review.secrets",
        )
    urls = [sqlite_file(loaded.root, p, review_name(n)) for p, n in ((one, SAMPLE_NUMBER), (two, SAMPLE_NUMBER + 1))]
    if urls[0] is not None and urls[0] == urls[1]:
        raise ConfigError(
            f"the SQLite database {urls[0]} is the same for every merge request", key_path="review.database.url",
            hint="put {{ review.number }} in its path: a review environment's database file is removed with it",
        )


def sqlite_file(root: Any, project: Project, name: str) -> str | None:
    """The absolute path of environment ``name``'s SQLite database file; None for no database, or another kind."""
    env = project.environments[name]
    if env.database is None or env.database.url is None:
        return None
    url = render(env.database.url, {"vars": env.vars, "environment": {"name": name}}, shell=False,
                 where=f"environments.{name}.database.url")
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url == prefix + ":memory:":
        return None
    path = url[len(prefix):].split("?", 1)[0]
    return posixpath.normpath(path if path.startswith("/") else f"{root}/{path}")


def overlapping_root(loaded: LoadedConfig, name: str, spec: Any) -> str | None:
    """The environment (other than ``name``) with a deploy root inside ``spec``'s or holding it; None if none."""
    root = _root(loaded, spec)
    for other, env in loaded.project.environments.items():
        if other != name and any(_contains(root, _root(loaded, t)) or _contains(_root(loaded, t), root)
                                 for t in env.targets):
            return other
    return None


def _root(loaded: LoadedConfig, spec: Any) -> tuple[str, str]:
    """(where, deploy root): ``local`` or the SSH address, and the normalised path."""
    where = "local" if isinstance(spec, LocalTargetSpec) else str(getattr(spec, "address", ""))
    return where, posixpath.normpath(target_root(spec, loaded.root))


def _contains(outer: tuple[str, str], inner: tuple[str, str]) -> bool:
    """Whether deploy root ``inner`` is ``outer`` or inside it, on the same host."""
    return outer[0] == inner[0] and (inner[1] == outer[1] or inner[1].startswith(outer[1].rstrip("/") + "/"))


def check_review(loaded: LoadedConfig, placeholder: ReleaseInfo) -> LoadedConfig:
    """For ``slipway validate``: the template filled in for an example request (:func:`check_template`) and
    its teardown commands rendered for each host; returns ``loaded`` with that environment among the others,
    so that its hooks and checks are rendered like every environment's (``loaded`` when there is no template)."""
    review = loaded.project.review
    if review is None:
        return loaded
    check_template(loaded)
    sample = with_review(loaded, SAMPLE_NUMBER, branch="example-branch")
    name = review_name(SAMPLE_NUMBER)
    env = sample.project.environments[name]
    url = environment_url(sample.project, name)
    for host in hosts_of(sample, name):
        context = template_context(project=sample.project, environment=name, env=env, host=host,
                                   release=placeholder, url=url)
        context["review"] = review_context(SAMPLE_NUMBER, "example-branch")
        for i, command in enumerate(review.teardown):
            render(command, context, where=f"review.teardown[{i}]")
    return sample
