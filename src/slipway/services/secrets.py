"""Secret references resolved at the last moment; values live only in memory and are masked in logs."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from slipway.errors import SecretError
from slipway.model.config import Environment


def resolve_secrets(env: Environment, *, environment: str, root: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """Values of every secret of ``env``; SecretError naming the first one that cannot be resolved."""
    values: dict[str, str] = {}
    for name, ref in env.secrets.items():
        where = f"environments.{environment}.secrets.{name}"
        if ref.env is not None:
            if ref.env not in environ:
                raise SecretError(
                    f"secret {name} needs environment variable {ref.env}, which is not set",
                    key_path=where,
                    hint=f"export {ref.env}=... before running slipway (its value is never stored or printed)",
                )
            values[name] = environ[ref.env]
        else:
            assert ref.file is not None
            path = Path(ref.file).expanduser()
            path = path if path.is_absolute() else root / path
            try:
                values[name] = path.read_text().rstrip("\n")
            except OSError as exc:
                raise SecretError(
                    f"secret {name} needs file {path}: {exc.strerror}",
                    key_path=where,
                    hint="create the file (readable only by you) or fix the path",
                ) from None
    return values
