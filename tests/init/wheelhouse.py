"""Wheels of packages installed in the test environment, made without network: the sample projects'
dependencies (Flask, Django, gunicorn and what they need) come from here, as a company's own package
mirror would serve them (``PIP_NO_INDEX`` and ``PIP_FIND_LINKS`` point pip at the directory).

A wheel is repacked from the installed distribution: the files its RECORD lists inside site-packages (no
scripts: pip makes them again from entry_points.txt, no bytecode), with its WHEEL file's tags.
"""

from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker


def _requirements(dist: metadata.Distribution) -> list[str]:
    """The names a distribution needs (markers with 'extra' left out; other markers kept, as pip would)."""
    names = []
    for req in dist.requires or []:
        spec, _, marker = req.partition(";")
        if marker and ("extra" in marker or not Marker(marker.strip()).evaluate()):
            continue
        names.append(re.split(r"[\s\[<>=!~(]", spec.strip(), maxsplit=1)[0])
    return names


def closure(names: list[str]) -> list[metadata.Distribution]:
    """The installed distributions of ``names`` and everything they need."""
    seen: dict[str, metadata.Distribution] = {}
    todo = list(names)
    while todo:
        dist = metadata.distribution(todo.pop())
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key not in seen:
            seen[key] = dist
            todo += _requirements(dist)
    return list(seen.values())


def _tag(dist: metadata.Distribution) -> str:
    wheel = dist.read_text("WHEEL") or ""
    tags = [line.split(":", 1)[1].strip() for line in wheel.splitlines() if line.startswith("Tag:")]
    return tags[0] if tags else "py3-none-any"


def repack(dist: metadata.Distribution, directory: Path) -> Path:
    """One installed distribution as a wheel file in ``directory``."""
    name = re.sub(r"[-.]+", "_", dist.metadata["Name"]).lower()
    path = directory / f"{name}-{dist.version}-{_tag(dist)}.whl"
    records = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:
        for file in dist.files or []:
            rel = file.as_posix()
            if rel.startswith("..") or "__pycache__" in rel or rel.endswith(("RECORD", "INSTALLER", "REQUESTED", ".pyc")):
                continue
            if rel.endswith("direct_url.json"):
                continue
            data = Path(str(file.locate())).read_bytes()
            wheel.writestr(rel, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            records.append(f"{rel},sha256={digest},{len(data)}")
        record = f"{name}-{dist.version}.dist-info/RECORD"
        dist_info = next((f.as_posix().split("/")[0] for f in dist.files or [] if ".dist-info/" in f.as_posix()), None)
        record = f"{dist_info}/RECORD" if dist_info else record
        wheel.writestr(record, "\n".join([*records, f"{record},,", ""]))
    return path


def make_wheelhouse(directory: Path, names: list[str]) -> Path:
    """Wheels of ``names`` and their dependencies in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for dist in closure(names):
        repack(dist, directory)
    return directory
