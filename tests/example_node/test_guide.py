"""docs/ship-node.md shows the example's slipway.yml in full: the block is the tested file, byte for byte."""

from __future__ import annotations

import re
from pathlib import Path

import yaml


def test_the_guide_shows_the_tested_slipway_yml(repo_root: Path) -> None:
    guide = (repo_root / "docs/ship-node.md").read_text()
    tested = (repo_root / "examples/node-app/slipway.yml").read_text()
    section = guide.split("\n## slipway.yml\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```yaml\n(.*?)```", section, flags=re.DOTALL)
    assert blocks == [tested], "docs/ship-node.md: copy examples/node-app/slipway.yml into its yaml block"
    assert yaml.safe_load(blocks[0])["name"] == "node-app"
