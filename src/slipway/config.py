"""Read slipway.yml into a frozen :class:`~slipway.model.config.Project`, with errors that point home.

Every error names file:line:column, the key path, what is wrong and what is allowed; an unknown key
gets a "did you mean". YAML is composed into nodes first so that every value keeps its position
(config_source.py, which also bounds what a file may cost to read).
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from slipway.config_source import Loc as Loc
from slipway.config_source import Mark as Mark
from slipway.config_source import compose, decode, dotted, to_python
from slipway.errors import ConfigError
from slipway.model.build_cache import cache_problem
from slipway.model.config import HOOK_ORDER, ArtifactSpec, Environment, Project
from slipway.model.containers import CONTAINER_NAME_RE, ContainerTargetSpec, ImageArtifactSpec, dependency_order
from slipway.model.host_services import HOST_SERVICE_NAME_RE
from slipway.model.review import REVIEW_KEYS, review_number
from slipway.model.states import StageKind

CONFIG_NAME = "slipway.yml"

@dataclass(frozen=True)
class LoadedConfig:
    """A validated project plus where it came from (for later errors about its values)."""

    project: Project
    path: Path
    marks: Mapping[Loc, Mark]
    text: str

    @property
    def root(self) -> Path:
        """The directory holding slipway.yml: relative paths in it are relative to this."""
        return self.path.parent

    def error(self, message: str, loc: Loc, *, hint: str = "") -> ConfigError:
        """A ConfigError pointing at ``loc`` (or its nearest marked parent)."""
        return _error_at(str(self.path), self.marks, loc, message, hint=hint)


def find_config(start: Path) -> Path:
    """The slipway.yml in ``start`` or the nearest parent directory."""
    start = start.resolve()
    for directory in (start, *start.parents):
        candidate = directory / CONFIG_NAME
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"no {CONFIG_NAME} in {start} or any parent directory",
        hint="run 'slipway init' to write a commented one, or pass --config PATH",
    )


def load_config(path: Path) -> LoadedConfig:
    """Read, parse and validate ``path``; raise ConfigError with its position on any problem."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist", hint="run 'slipway init' or pass --config PATH") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    return parse_config(decode(data, file=str(path)), path=path)


def parse_config(text: str, *, path: Path) -> LoadedConfig:
    """Parse ``text`` as the contents of ``path``."""
    file = str(path)
    node = compose(text, file=file)
    if node is None:
        raise ConfigError("the file is empty", file=file, hint="run 'slipway init' for a starting point")
    marks: dict[Loc, Mark] = {}
    data = to_python(node, marks, file=file)
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping of keys", file=file, line=1, column=1)
    try:
        project = Project.model_validate(without_extensions(data))
    except ValidationError as exc:
        raise _from_validation(exc, file, marks) from None
    loaded = LoadedConfig(project=project, path=path, marks=marks, text=text)
    check_references(loaded)
    return loaded


#: Keys that start with this are the file's own (blocks to anchor and merge, notes): Slipway ignores them.
EXTENSION_PREFIX = "x-"


def without_extensions(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` without the ``x-`` keys of the top level and of each environment and the review template,
    where a file keeps the blocks it anchors (``x-common: &common``) and merges (``<<: *common``). Free
    mappings such as ``vars`` keep every key: there an ``x-`` key is the user's own variable."""

    def strip(mapping: Any) -> Any:
        if not isinstance(mapping, dict):
            return mapping
        return {k: v for k, v in mapping.items() if not (isinstance(k, str) and k.startswith(EXTENSION_PREFIX))}

    out = strip(data)
    if isinstance(out.get("environments"), dict):
        out["environments"] = {name: strip(env) for name, env in out["environments"].items()}
    if "review" in out:
        out["review"] = strip(out["review"])
    return dict(out)


def _error_at(file: str, marks: Mapping[Loc, Mark], loc: Loc, message: str, *, hint: str = "") -> ConfigError:
    probe = loc
    while probe and probe not in marks:
        probe = probe[:-1]
    mark = marks.get(probe)
    return ConfigError(
        message,
        file=file,
        line=mark.line if mark else None,
        column=mark.column if mark else None,
        key_path=dotted(loc) or None,
        hint=hint,
    )


def _from_validation(exc: ValidationError, file: str, marks: Mapping[Loc, Mark]) -> ConfigError:
    """Turn pydantic's first error into one ConfigError; the others are listed in its hint."""
    problems: list[ConfigError] = []
    errors = exc.errors()
    locs = [tuple(e["loc"]) for e in errors]
    # A typo'd key usually also causes a "missing" error; the typo is the root cause, so it goes first.
    errors.sort(key=lambda e: e["type"] != "extra_forbidden")
    for err in errors:
        raw = tuple(err["loc"])
        if err["type"] == "too_short" and any(len(o) > len(raw) and o[: len(raw)] == raw for o in locs):
            continue  # a consequence of an error inside this list, reported on its own
        loc = _data_loc(raw, marks)
        message, hint = _explain(err, loc, raw)
        if err["type"] == "extra_forbidden":
            key_mark = marks.get((*loc, "__key__"))
            error = _error_at(file, marks, loc, message, hint=hint)
            if key_mark:
                error = ConfigError(
                    message,
                    file=file,
                    line=key_mark.line,
                    column=key_mark.column,
                    key_path=dotted(loc),
                    hint=hint,
                )
        else:
            error = _error_at(file, marks, loc, message, hint=hint)
        problems.append(error)
    first = problems[0]
    if len(problems) > 1:
        more = "\n".join(f"  also: {p}" for p in problems[1:6])
        first = ConfigError(
            first.reason,
            file=first.file,
            line=first.line,
            column=first.column,
            key_path=first.key_path,
            hint="\n".join(x for x in (first.hint, more) if x),
        )
    return first


def _data_loc(loc: tuple[Any, ...], marks: Mapping[Loc, Mark]) -> Loc:
    """Drop pydantic's union-tag parts of a location so that it matches the YAML path."""
    out: Loc = ()
    for i, part in enumerate(loc):
        candidate = (*out, part)
        if candidate in marks or i == len(loc) - 1 or isinstance(part, int):
            out = candidate
    return out


def _explain(err: Any, loc: Loc, raw: tuple[Any, ...]) -> tuple[str, str]:
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        allowed = sorted(_allowed_keys(raw[:-1]))
        guess = difflib.get_close_matches(key, allowed, n=1)
        hint = f"did you mean {guess[0]!r}? " if guess else ""
        return f"unknown key {key!r}", hint + "allowed here: " + ", ".join(allowed)
    if kind == "missing":
        return f"required key {str(loc[-1])!r} is missing", "add it; docs/config.md describes it"
    if kind in ("literal_error", "enum"):
        expected = err.get("ctx", {}).get("expected", "")
        return f"{err['msg'].lower()}", f"allowed: {expected}" if expected else ""
    if kind == "union_tag_invalid":
        ctx = err.get("ctx", {})
        return f"unknown kind {ctx.get('tag')!r}", f"allowed kinds: {ctx.get('expected_tags')}"
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return msg, str(getattr(err.get("ctx", {}).get("error"), "hint", ""))  # a HintedValueError's advice


def _allowed_keys(loc: Loc) -> set[str]:
    """The keys a mapping at ``loc`` accepts, found by walking the model's type hints."""
    current: Any = Project
    for part in loc:
        current = _step_into(current, part)
        if current is None:
            return set()
    current = _unwrap_model(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return set(current.model_fields)
    return set()


def _unwrap_model(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap_model(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        models = [a for a in typing.get_args(tp) if isinstance(a, type) and issubclass(a, BaseModel)]
        return models[0] if len(models) == 1 else None
    return tp


def _step_into(tp: Any, part: str | int) -> Any:
    tp = _unwrap_annotated(tp)
    origin = typing.get_origin(tp)
    if origin in (tuple, list, Sequence) and isinstance(part, int):
        return typing.get_args(tp)[0]
    if origin is dict:
        return typing.get_args(tp)[1]
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            arg = _unwrap_annotated(arg)
            tag = arg.model_fields.get("kind") if isinstance(arg, type) and issubclass(arg, BaseModel) else None
            if tag is not None and tag.default == part:
                return arg  # pydantic puts the discriminator's tag in the location
        models = [a for a in typing.get_args(tp) if isinstance(a, type) and issubclass(a, BaseModel)]
        if len(models) == 1 and isinstance(part, str):
            return _step_into(models[0], part)  # an optional section (``X | None``): step into X
        return None
    if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
        field = tp.model_fields.get(part)
        return field.annotation if field else None
    return None


def _unwrap_annotated(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def check_references(loaded: LoadedConfig) -> None:
    """Cross-key rules pydantic cannot see: names that must exist, be unique, or come in order."""
    project = loaded.project
    check_databases(loaded)
    check_containers(loaded)
    check_host_services(loaded)
    check_breaker_keys(loaded)
    check_review(loaded)
    artifact = project.artifact
    if isinstance(artifact, ArtifactSpec) and (problem := cache_problem(artifact.cache)):
        raise loaded.error(problem.message, ("artifact", "cache", *problem.loc), hint=problem.hint)
    seen: dict[str, int] = {}
    deployed: set[str] = set()
    envs = sorted(project.environments)
    builds = [i for i, s in enumerate(project.pipeline) if s.kind is StageKind.BUILD]
    if not builds:
        raise loaded.error(
            "the pipeline has no build stage",
            ("pipeline",),
            hint="add '- {name: build, kind: build}' as the first stage: every run builds its artifact once",
        )
    if builds[0] != 0 or len(builds) > 1:
        at = builds[1] if len(builds) > 1 else builds[0]
        raise loaded.error(
            "the build stage must be the first stage and appear once",
            ("pipeline", at, "kind"),
            hint="an artifact is built once per run, before anything tests or deploys it",
        )
    for i, stage in enumerate(project.pipeline):
        if stage.name in seen:
            raise loaded.error(
                f"stage name {stage.name!r} is already used by stage {seen[stage.name] + 1}",
                ("pipeline", i, "name"),
                hint="give each stage its own name",
            )
        seen[stage.name] = i
        env = stage.environment
        if env is None:
            continue
        if env not in project.environments:
            guess = difflib.get_close_matches(env, envs, n=1)
            raise loaded.error(
                f"environment {env!r} is not defined",
                ("pipeline", i, "environment"),
                hint=(f"did you mean {guess[0]!r}? " if guess else "") + "defined: " + ", ".join(envs),
            )
        if stage.kind is StageKind.DEPLOY:
            if env in deployed:
                raise loaded.error(
                    f"environment {env!r} is deployed by two stages",
                    ("pipeline", i, "environment"),
                    hint="deploy each environment once per run",
                )
            deployed.add(env)
        elif env not in deployed:
            raise loaded.error(
                f"stage {stage.name!r} works on {env!r} before any stage deploys it",
                ("pipeline", i, "environment"),
                hint=f"put a deploy stage for {env!r} before it",
            )


def check_review(loaded: LoadedConfig) -> None:
    """``review:`` holds an environment's keys (plus ttl, teardown), with targets, and no environment's name
    looks like a review environment's. Its templates are filled in by ``slipway validate`` (services/review_env.py)."""
    review = loaded.project.review
    if review is None:
        return
    allowed = sorted({*Environment.model_fields, *REVIEW_KEYS})
    for key in review.environment:
        if key not in Environment.model_fields:
            guess = difflib.get_close_matches(key, allowed, n=1)
            mark = loaded.marks.get(("review", key, "__key__"))
            raise ConfigError(
                f"unknown key {key!r}", file=str(loaded.path), line=mark.line if mark else None,
                column=mark.column if mark else None, key_path=f"review.{key}",
                hint=(f"did you mean {guess[0]!r}? " if guess else "") + "allowed here: " + ", ".join(allowed),
            )
    if "targets" not in review.environment:
        raise loaded.error(
            "review needs 'targets'", ("review",),
            hint="e.g. targets: [{kind: local, name: web-1, path: .slipway/targets/review-{{ review.number }}}]",
        )
    for name in loaded.project.environments:
        if review_number(name) is not None:
            raise loaded.error(
                f"environment {name!r} has the name of a review environment", ("environments", name),
                hint="review-<N> names the review environment of merge request N: rename this one",
            )


def check_breaker_keys(loaded: LoadedConfig) -> None:
    """``breaker:`` belongs to dependencies only: on a verify or smoke check it would be silently ignored."""
    lists: list[tuple[Loc, Sequence[BaseModel]]] = [(("deploy", "checks"), loaded.project.deploy.checks)]
    lists += [(("environments", n, "smoke"), e.smoke) for n, e in loaded.project.environments.items()]
    for where, specs in lists:
        for i, spec in enumerate(specs):
            if "breaker" in spec.model_fields_set:
                loc = (*where, i, "breaker")
                key = loaded.marks.get((*loc, "__key__"))
                kind = "smoke" if where[-1] == "smoke" else "verify"
                raise ConfigError(
                    f"a {kind} check has no circuit breaker: 'breaker' applies to dependencies only",
                    file=str(loaded.path),
                    line=key.line if key else None,
                    column=key.column if key else None,
                    key_path=dotted(loc),
                    hint="remove 'breaker:' here; to guard an external service, list it under the environment's "
                    "'dependencies:' with a name and a 'breaker:' (docs/checks.md)",
                )


def check_databases(loaded: LoadedConfig) -> None:
    """An environment's database names one of its secrets, and databases come with ``migrations``."""
    project = loaded.project
    for name, env in project.environments.items():
        if env.database is None:
            if project.migrations is not None:
                raise loaded.error(
                    "'migrations' is set but this environment has no database to run them on",
                    ("environments", name),
                    hint="add 'database: {secret: DATABASE_URL}' (a name in its secrets) or 'database: {url: ...}'",
                )
            continue
        secret = env.database.secret
        if secret is not None and secret not in env.secrets:
            guess = difflib.get_close_matches(secret, list(env.secrets), n=1)
            raise loaded.error(
                f"secret {secret!r} is not defined in this environment",
                ("environments", name, "database", "secret"),
                hint=(f"did you mean {guess[0]!r}? " if guess else "")
                + f"add it under environments.{name}.secrets, e.g. {secret}: {{env: {secret}}}",
            )
        if project.migrations is None:
            raise loaded.error(
                "a database is given but there is no top-level 'migrations' section",
                ("environments", name, "database"),
                hint="add 'migrations: {directory: db/migrations}' naming the directory inside the artifact",
            )


def check_containers(loaded: LoadedConfig) -> None:
    """An image deploys to container targets only, and the services they run are defined (docs/containers.md)."""
    project = loaded.project
    is_image = isinstance(project.artifact, ImageArtifactSpec)
    for env_name, env in project.environments.items():
        for i, target in enumerate(env.targets):
            if is_image != isinstance(target, ContainerTargetSpec):
                raise loaded.error(
                    f"a {target.kind} target cannot run an {project.artifact.kind} artifact",
                    ("environments", env_name, "targets", i, "kind"),
                    hint="an image runs on 'kind: container' targets; an archive on local and ssh targets"
                    if is_image
                    else "container targets run an image: set 'artifact: {kind: image, ...}' (docs/containers.md)",
                )
    if not is_image:
        if project.services:
            raise loaded.error(
                "'services' run as containers: they need 'artifact: {kind: image}'", ("services",),
                hint="services of an archive on local and ssh targets go under deploy.services (docs/services-on-hosts.md)",
            )
        return
    _check_image_project(loaded)
    for env_name, env in project.environments.items():
        if env.strategy is not None and env.strategy.kind.value == "blue_green":
            raise loaded.error(
                "container targets do not use blue/green slots",
                ("environments", env_name, "strategy"),
                hint="use rolling or canary: a new container starts beside the old one and takes over",
            )
        if env.readiness is not None:
            raise loaded.error(
                "container services have their own readiness checks",
                ("environments", env_name, "readiness"),
                hint="move the checks to services.NAME.readiness (against host 'container')",
            )
        for i, target in enumerate(env.targets):
            assert isinstance(target, ContainerTargetSpec)
            _check_target_services(loaded, env_name, i, target)


def check_host_services(loaded: LoadedConfig) -> None:
    """Services on hosts run from release directories, in every environment, with secrets it defines."""
    project = loaded.project
    services = project.deploy.services
    if not services:
        return
    if isinstance(project.artifact, ImageArtifactSpec):
        raise loaded.error("deploy.services run on local and ssh targets, not containers", ("deploy", "services"),
                           hint="an image's services go under the top-level 'services' (docs/containers.md)")
    for name in services:  # here, not in the model: the error points at the name's own line
        if not re.match(HOST_SERVICE_NAME_RE, name):
            raise loaded.error(f"service name {name!r} cannot name a program", ("deploy", "services", name),
                               hint="use a-z, 0-9, '_' and '-' (at most 41, a letter or digit first)")
    for env_name, env in project.environments.items():
        if env.strategy is not None and env.strategy.kind.value == "blue_green":
            raise loaded.error(
                "services on hosts do not run in blue/green slots yet", ("environments", env_name, "strategy"),
                hint="use rolling or canary with deploy.services, or activate hooks with blue/green",
            )
        for name, service in services.items():
            for j, secret in enumerate(service.secrets):
                if secret not in env.secrets:
                    raise loaded.error(
                        f"secret {secret!r} is not defined in environment {env_name!r}",
                        ("deploy", "services", name, "secrets", j),
                        hint=f"add it under environments.{env_name}.secrets, e.g. {secret}: {{env: {secret}}}",
                    )


def _check_image_project(loaded: LoadedConfig) -> None:
    project = loaded.project
    wrong: tuple[str, Loc, str] | None = None
    if project.migrations is not None:
        wrong = ("migrations are read from an archive artifact", ("migrations",), "run them from the image")
    elif any(getattr(project.deploy.hooks, phase) for phase in HOOK_ORDER):
        wrong = ("deploy hooks run in release directories, which containers do not have", ("deploy", "hooks"),
                 "do that work in the image or its command")
    elif not project.services:
        wrong = ("an image artifact needs 'services' to run", ("artifact",), "add services: {web: {port: 8080}}")
    elif not re.match(CONTAINER_NAME_RE, project.name):
        wrong = (f"project name {project.name!r} must name containers", ("name",), "use a-z, 0-9, '_' and '-'")
    for name in ([] if wrong else [*project.services, *project.environments]):
        if not re.match(CONTAINER_NAME_RE, name):
            where: Loc = ("services", name) if name in project.services else ("environments", name)
            wrong = (f"{name!r} cannot name a container", where, "use a-z, 0-9, '_' and '-' (at most 41)")
            break
    if wrong is not None:
        raise loaded.error(wrong[0], wrong[1], hint=wrong[2])
    try:
        dependency_order({name: service.depends_on for name, service in project.services.items()})
    except ConfigError as exc:
        loc = tuple(exc.key_path.split(".")) if exc.key_path else ("services",)
        raise loaded.error(exc.reason, loc, hint=exc.hint) from None


def _check_target_services(loaded: LoadedConfig, env_name: str, index: int, target: ContainerTargetSpec) -> None:
    project = loaded.project
    env = project.environments[env_name]
    at: Loc = ("environments", env_name, "targets", index)
    known = sorted(project.services)
    for j, name in enumerate(target.services):
        if name not in project.services:
            guess = difflib.get_close_matches(name, known, n=1)
            raise loaded.error(
                f"service {name!r} is not defined", (*at, "services", j),
                hint=(f"did you mean {guess[0]!r}? " if guess else "") + "defined: " + ", ".join(known),
            )
    runs = target.services or tuple(project.services)
    groups: dict[str, str] = {}
    for name in runs:
        service = project.services[name]
        for dep in service.depends_on:
            if dep not in runs:
                raise loaded.error(
                    f"service {name!r} depends on {dep!r}, which target {target.name!r} does not run",
                    (*at, "services"), hint=f"add {dep} to the target's services",
                )
        for j, secret in enumerate(service.secrets):
            if secret not in env.secrets:
                guess = difflib.get_close_matches(secret, list(env.secrets), n=1)
                raise loaded.error(
                    f"secret {secret!r} is not defined in environment {env_name!r}", ("services", name, "secrets", j),
                    hint=(f"did you mean {guess[0]!r}? " if guess else "")
                    + f"add it under environments.{env_name}.secrets, e.g. {secret}: {{env: {secret}}}",
                )
        if env.router is not None and service.port is not None:
            group = service.router_group or env.router.group
            if group in groups:
                raise loaded.error(
                    f"services {groups[group]!r} and {name!r} would share router group {group!r}",
                    ("services", name, "router_group"), hint="give each routed service its own router_group",
                )
            groups[group] = name
