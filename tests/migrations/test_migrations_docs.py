"""docs/migrations.md shows a complete slipway.yml for each tool, and each one is a valid configuration."""

from __future__ import annotations

import re
from pathlib import Path

from slipway.config import parse_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "migrations.md"


def complete_configs() -> dict[str, str]:
    """The YAML blocks of the page that are whole files (they have ``version:``), by their tool."""
    found = {}
    for block in re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S):
        if re.search(r"^version: 1$", block, re.M):
            tool = re.search(r"^\s*tool: (\w+)", block, re.M)
            found[tool.group(1) if tool else "sql"] = block
    return found


def test_each_tool_has_a_complete_valid_slipway_yml() -> None:
    configs = complete_configs()
    assert set(configs) == {"sql", "alembic", "django", "command"}, sorted(configs)
    for tool, text in configs.items():
        loaded = parse_config(text, path=Path("/p/slipway.yml"))
        spec = loaded.project.migrations
        assert spec is not None and spec.tool == tool, tool
        assert loaded.project.pipeline and loaded.project.environments, tool
