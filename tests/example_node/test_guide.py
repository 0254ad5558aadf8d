"""docs/ship-node.md shows the example's slipway.yml in full: the block is the tested file, byte for byte."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.example_flask.test_guide import yaml_blocks


def test_the_guide_shows_the_tested_slipway_yml(repo_root: Path) -> None:
    blocks = yaml_blocks(repo_root / "docs/ship-node.md")
    tested = (repo_root / "examples/node-app/slipway.yml").read_text()
    assert blocks == [tested], "docs/ship-node.md: copy examples/node-app/slipway.yml into its yaml block"
    assert yaml.safe_load(blocks[0])["name"] == "node-app"
