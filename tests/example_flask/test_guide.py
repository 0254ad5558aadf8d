"""docs/ship-python.md shows the example's slipway.yml in full: the block is the tested file, byte for byte."""

from __future__ import annotations

import re
from pathlib import Path

import yaml


def yaml_blocks(guide: Path) -> list[str]:
    """The yaml blocks of a guide's "## slipway.yml" section."""
    section = guide.read_text().split("\n## slipway.yml\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```yaml\n(.*?)```", section, flags=re.DOTALL)


def test_the_guide_shows_the_tested_slipway_yml(repo_root: Path) -> None:
    blocks = yaml_blocks(repo_root / "docs/ship-python.md")
    tested = (repo_root / "examples/flask-app/slipway.yml").read_text()
    assert blocks == [tested], "docs/ship-python.md: copy examples/flask-app/slipway.yml into its yaml block"
    assert yaml.safe_load(blocks[0])["name"] == "flask-app"
