"""Secret references resolved at the last moment; values live only in memory and are masked in logs."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from slipway.errors import SecretError
from slipway.model.config import Environment, SecretRef


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
