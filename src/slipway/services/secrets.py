"""Secret references resolved at the last moment; values live only in memory and are masked in logs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from slipway.config import LoadedConfig
from slipway.errors import SecretError
from slipway.model.config import Environment, Project, SecretRef


def resolve_secrets(env: Environment, *, environment: str, root: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """Values of every secret of ``env``; SecretError naming the first one that cannot be resolved."""
    return {
        name: resolve_ref(ref, name=name, where=f"environments.{environment}.secrets.{name}", root=root, environ=environ)
        for name, ref in env.secrets.items()
    }


def resolve_ref(ref: SecretRef, *, name: str, where: str, root: Path, environ: Mapping[str, str]) -> str:
    """The value of one reference; SecretError (with the key path ``where``) when it cannot be read."""
    if ref.env is not None:
        if ref.env not in environ:
            raise SecretError(
                f"secret {name} needs environment variable {ref.env}, which is not set",
                key_path=where,
                hint=f"export {ref.env}=... before running slipway (its value is never stored or printed)",
            )
        return environ[ref.env]
    assert ref.file is not None
    path = Path(ref.file).expanduser()
    path = path if path.is_absolute() else root / path
    try:
        return path.read_text().rstrip("\n")
    except OSError as exc:
        raise SecretError(
            f"secret {name} needs file {path}: {exc.strerror}",
            key_path=where,
            hint="create the file (readable only by you) or fix the path",
        ) from None


def reached_environments(project: Project, *, after: int = 0) -> list[str]:
    """The environments the pipeline's stages from index ``after`` on deploy or work on, in order."""
    return list(dict.fromkeys(s.environment for s in project.pipeline[after:] if s.environment))


def unresolved(
    project: Project, environments: Iterable[str], *, root: Path, environ: Mapping[str, str]
) -> list[tuple[str, SecretError]]:
    """(where, why) for every secret of ``environments`` (and the image registry's login) that cannot be read."""
    refs: list[tuple[str, str, str, SecretRef]] = []  # (environment or "artifact", name, key path, reference)
    for environment in environments:
        for name, ref in project.environments[environment].secrets.items():
            refs.append((environment, name, f"environments.{environment}.secrets.{name}", ref))
    registry = getattr(project.artifact, "registry", None)
    if registry is not None and registry.password is not None:
        if isinstance(registry.username, SecretRef):
            refs.append(("artifact", "registry username", "artifact.registry.username", registry.username))
        refs.append(("artifact", "registry password", "artifact.registry.password", registry.password))
    missing = []
    for where, name, key_path, ref in refs:
        try:
            resolve_ref(ref, name=name, where=key_path, root=root, environ=environ)
        except SecretError as exc:
            missing.append((where, exc))
    return missing


def require_secrets(loaded: LoadedConfig, environments: Iterable[str], *, environ: Mapping[str, str], what: str) -> None:
    """SecretError listing every secret ``what`` would need and cannot resolve (values are never printed)."""
    missing = unresolved(loaded.project, environments, root=loaded.root, environ=environ)
    if not missing:
        return
    lines = "\n".join(f"  {where}: {exc.key_path}: {exc.reason}" for where, exc in missing)
    raise SecretError(
        f"{len(missing)} secret(s) that {what} needs cannot be resolved:\n{lines}",
        file=str(loaded.path),
        hint="set each one (its value is never printed or stored) and try again; nothing was built, deployed "
        "or recorded",
    )
