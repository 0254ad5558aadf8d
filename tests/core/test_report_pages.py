"""The report pages the web UI shows: runs waiting at a gate across projects, a page at a time, and the
runs of one commit (a prefix of its hash, taken literally)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from slipway.model.states import RunKind, StageKind, State
from slipway.services import report
from slipway.services.app import App, open_app

STAGES = [
    ("build", StageKind.BUILD, None),
    ("approve-production", StageKind.APPROVAL, None),
    ("deploy-production", StageKind.DEPLOY, "production"),
]


@pytest.fixture
def apps(tmp_path: Path, repo_root: Path) -> Iterator[dict[str, App]]:
    """Two projects, ``alpha`` and ``beta``, each with its own store."""
    opened = {}
    for name in ("beta", "alpha"):
        root = tmp_path / name
        root.mkdir()
        text = (repo_root / "examples/webapp/slipway.yml").read_text().replace("\nname: webapp\n", f"\nname: {name}\n")
        (root / "slipway.yml").write_text(text)
        subprocess.run(["git", "init", "-q"], cwd=root, check=True)
        opened[name] = open_app(cwd=root, environ={"SLIPWAY_USER": "t"})
    try:
        yield opened
    finally:
        for app in opened.values():
            app.close()


def add_run(app: App, commit: str, *, waiting: bool) -> int:
    """A pipeline run of ``commit``; waiting at its gate, or still pending."""
    store = app.store
    run_id = store.create_run(
        project=app.config.project.name,
        kind=RunKind.PIPELINE,
        commit=commit,
        triggered_by="t",
        config_text=app.config.text,
        config_path=str(app.config.path),
        stages=STAGES,
    )
    if waiting:
        build, gate = store.get_run(run_id).stages[:2]
        store.set_run_state(run_id, State.RUNNING)
        store.set_stage_state(build.id, State.RUNNING)
        store.set_stage_state(build.id, State.SUCCEEDED)
        store.set_stage_state(gate.id, State.RUNNING)
        store.set_stage_state(gate.id, State.WAITING)
        store.set_run_state(run_id, State.WAITING)
    return run_id


def test_waiting_runs_are_paged_across_projects_by_name_then_newest_first(apps: dict[str, App]) -> None:
    alpha = [add_run(apps["alpha"], "a" * 40, waiting=True) for _ in range(3)]
    add_run(apps["alpha"], "a" * 40, waiting=False)
    beta = [add_run(apps["beta"], "b" * 40, waiting=True) for _ in range(2)]
    everything = [("alpha", r) for r in reversed(alpha)] + [("beta", r) for r in reversed(beta)]

    def page(limit: int, offset: int) -> list[tuple[str, int]]:
        found = report.waiting_page(apps, limit=limit, offset=offset)
        assert found["total"] == 5 and (found["limit"], found["offset"]) == (limit, offset)
        return [(item["project"], item["run"]["id"]) for item in found["items"]]

    assert page(20, 0) == everything
    for limit in (1, 2, 3):
        for offset in range(6):
            assert page(limit, offset) == everything[offset : offset + limit], (limit, offset)
    first = report.waiting_page(apps, limit=1, offset=0)["items"][0]
    assert first["environments"] == ["production"] and first["run"]["state"] == "waiting"
    assert report.waiting_page(apps, limit=0)["items"] == []


def test_a_commits_runs_match_a_prefix_of_its_hash_literally(apps: dict[str, App]) -> None:
    app = apps["alpha"]
    ours = [add_run(app, "abc1" + "0" * 36, waiting=False) for _ in range(3)]
    add_run(app, "abd1" + "0" * 36, waiting=False)
    add_run(apps["beta"], "abc1" + "0" * 36, waiting=False)  # another project's run of the same commit

    found = report.commit_runs_page(app, "abc1", limit=2, offset=0)
    assert found["total"] == 3 and [r["id"] for r in found["items"]] == [ours[2], ours[1]]
    assert [r["id"] for r in report.commit_runs_page(app, "abc1" + "0" * 36, limit=2, offset=2)["items"]] == [ours[0]]
    assert report.commit_runs_page(app, "ab_1", limit=20)["total"] == 0  # a LIKE wildcard is no wildcard
    assert report.commit_runs_page(app, "ab%", limit=20)["total"] == 0
