"""The state store stops during a deployment: hosts still go back, and the store is told later (journal)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.recovery_support import Recovering
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.timeout(300)


def test_postgres_stopped_during_activate_reverts_hosts_journals_and_the_next_command_reconciles(
    tmp_path: Path,
) -> None:
    with PostgresServer() as pg:  # its own server: this test stops it
        proj = Recovering(tmp_path / "proj")
        proj.env["SLIPWAY_DATABASE_URL"] = pg.create_database("slipway")
        proj.ok("run")
        old = proj.current("prod-1")
        proj.new_version("v2")
        proj.hold("prod-2", 2)  # prod-1 runs v2 (recorded); prod-2 switched (recorded) and activates
        proc = proj.start("run")
        proj.wait_reached("prod-2", 2, proc)
        pg.crash()  # pg_ctl -m immediate
        proj.let_go("prod-2", 2)
        exit_code, output = proj.finish(proc)
        assert exit_code == 12, output
        assert "journal" in output
        assert "does not answer" in output and "sqlalche.me" not in output  # one clear paragraph, no driver dump
        assert proj.currents() == {"prod-1": old, "prod-2": old}  # put back although nothing could be recorded
        journals = list((proj.root / ".slipway/journal").glob("*.jsonl"))
        assert journals and all(p.stat().st_mode & 0o777 == 0o600 for p in journals)
        down = proj.slipway("status")
        assert down.returncode == 12 and "journal" in down.stderr  # says what is pending

        pg.restart()
        assert proj.status_hosts() == proj.currents()  # status replayed the journal first
        assert list((proj.root / ".slipway/journal").glob("*.jsonl")) == []
        run = proj.history()[0]
        assert run["state"] == "failed" and run["stages"][1]["state"] == "failed"
        deployment = json.loads(proj.ok("deployments", "prod", "--json").stdout)[0]
        assert deployment["state"] == "failed"
        store = proj.store()
        try:
            assert store.locks() == []
        finally:
            store.close()
        proj.ok("run")  # and the next deployment goes ahead
        assert len(set(proj.currents().values())) == 1 and proj.current("prod-1") != old
