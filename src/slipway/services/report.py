"""Read-only views of the store: status, history, logs, deployments. Plain data, rendered by the CLI."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slipway.engine.strategy import BlueGreen
from slipway.errors import NotFound, SlipwayError
from slipway.model.containers import ImageArtifactSpec
from slipway.model.records import DeploymentRecord, HostRelease, RunRecord, StepRecord
from slipway.model.states import State
from slipway.services.app import App

if TYPE_CHECKING:
    from slipway.services.traffic import Rotation


def status(app: App) -> dict[str, Any]:
    """For each environment: which release runs there, from which artifact and commit, since when, by
    which run, and the runs queued for it (``queue``); and for each host its release. An environment whose hosts differ says ``mixed``. With a
    router, each host's place in it (``router``: in rotation, drained, ...; "unknown" and the reason in
    the environment's ``router.error`` when the router cannot be read)."""
    rows = app.store.host_releases()
    rotations = router_rotations(app)
    envs: list[dict[str, Any]] = []
    for name, env in app.config.project.environments.items():
        hosts = {h.host: h for h in rows if h.environment == name}
        releases = {h.release_id for h in hosts.values()}
        newest = max(hosts.values(), key=lambda h: h.since, default=None)
        envs.append(
            {
                "name": name,
                "release": (next(iter(releases)) if len(releases) == 1 else ("mixed" if releases else None)),
                "artifact_digest": newest.artifact_digest if newest and len(releases) == 1 else None,
                # release.commit: the run deployed; artifact.commit: the commit that built its digest
                "commit": newest.commit if newest and len(releases) == 1 else None,
                "artifact_commit": _artifact_commit(app, newest.artifact_digest) if newest and len(releases) == 1 else None,
                "deployed_at": newest.since if newest else None,
                "run_id": newest.run_id if newest else None,
                "deployment_id": newest.deployment_id if newest else None,
                "hosts": [
                    {
                        "name": t.name,
                        "release": hosts[t.name].release_id if t.name in hosts else None,
                        "artifact_digest": hosts[t.name].artifact_digest if t.name in hosts else None,
                        **({"router": rotations[name].hosts.get(t.name)} if name in rotations else {}),
                    }
                    for t in env.targets
                ],
                "router": (
                    {"group": rotations[name].group, "error": rotations[name].error} if name in rotations else None
                ),
            }
        )
        if isinstance(env.strategy, BlueGreen):  # what each slot holds; the warm one is a switch away
            slots: dict[str, dict[str, Any]] = {}
            for row in app.store.slot_releases(name):
                slots.setdefault(row.host, {})[row.slot] = {"release": row.release_id, "serving": row.serving}
            for host in envs[-1]["hosts"]:
                host["slots"] = slots.get(host["name"], {})
    _add_freezes(app, envs)
    _add_queues(app, envs)
    waiting = [r.id for r in app.store.list_runs(limit=50, project=app.config.project.name, state=State.WAITING)]
    return {
        "project": app.config.project.name, "environments": envs, "waiting_runs": waiting, "reviews": _reviews(app, rows)
    }


def _reviews(app: App, rows: list[HostRelease]) -> list[dict[str, Any]]:
    """The open review environments of merge requests: URL, the merge commit that runs there, its run."""
    out = []
    from slipway.model.review import ReviewState

    for review in app.store.reviews(app.config.project.name, state=ReviewState.OPEN):
        hosts = [h for h in rows if h.environment == review.environment]
        out.append({
            "name": review.environment, "number": review.number, "url": review.url, "branch": review.branch,
            "merge_commit": review.merge_commit, "run_id": review.run_id,
            "release": hosts[0].release_id if len({h.release_id for h in hosts}) == 1 else ("mixed" if hosts else None),
            "commit": hosts[0].commit if hosts else None,
        })
    return out


def _add_queues(app: App, envs: list[dict[str, Any]]) -> None:
    """Each environment's ``queue``: the runs queued for it (services/queue.py), oldest (next) first."""
    queued = app.store.queued_runs(app.config.project.name)
    for env in envs:
        env["queue"] = [
            {"run_id": q.run_id, "kind": q.kind.value, "commit": q.commit, "stage": q.stage, "since": q.since}
            for q in queued
            if q.environment == env["name"]
        ]


def _add_freezes(app: App, envs: list[dict[str, Any]]) -> None:
    """Each environment's ``freeze``: the one in force now (name, since, until as ISO UTC), or None."""
    from slipway.services.freeze import active_freezes

    frozen = active_freezes(app, app.config.project)
    for env in envs:
        active = frozen.get(env["name"])
        env["freeze"] = (
            {"name": active.name, "since": active.start.isoformat(), "until": active.until.isoformat(),
             "until_text": active.until_text()}
            if active is not None
            else None
        )


def router_rotations(app: App) -> dict[str, Rotation]:
    """Each environment with a router: where each of its hosts stands there now (read in parallel)."""
    routed = [name for name, env in app.config.project.environments.items() if env.router is not None]
    if not routed:
        return {}
    import asyncio  # only a project with a router pays for it at start-up

    async def read_all() -> dict[str, Rotation]:
        return dict(zip(routed, await asyncio.gather(*(_rotation(app, name) for name in routed)), strict=True))

    return asyncio.run(read_all())


async def _rotation(app: App, name: str) -> Rotation:
    from slipway.services.traffic import (  # the router and httpx: only for projects that have one
        UNKNOWN,
        Rotation,
        nginx_router,
        read_rotation,
    )

    env = app.config.project.environments[name]
    assert env.router is not None
    try:
        wanted = _backends_of(app, name)
    except SlipwayError as exc:  # e.g. a router.port that does not render to a port
        return Rotation(env.router.group, dict.fromkeys((t.name for t in env.targets), UNKNOWN), exc.message)
    router = nginx_router(env.router, root=app.root)
    try:
        return await read_rotation(router, env.router.group, wanted)
    finally:
        await router.close()


def _backends_of(app: App, name: str) -> dict[str, list[tuple[str, int | None]]]:
    """host -> the (address, port) of its backends, as a deployment sets them (one per blue/green slot).

    Containers publish a free port per deployment: their backends are found by the target's address alone.
    """
    from slipway.clock import SystemClock
    from slipway.engine.events import NullObserver
    from slipway.engine.planner import ReleaseInfo, template_context
    from slipway.services.releases import environment_url, host_views
    from slipway.services.traffic import traffic_gate

    project = app.config.project
    env = project.environments[name]
    if isinstance(project.artifact, ImageArtifactSpec):
        return {t.name: [(str(getattr(t, "address", None) or "127.0.0.1"), None)] for t in env.targets}
    release = ReleaseInfo("<release>", "sha256:<digest>", "<commit>")  # a router.port names no release
    url = environment_url(project, name)
    wanted: dict[str, list[tuple[str, int | None]]] = {t.name: [] for t in env.targets}
    for view in host_views(app.config, name):
        contexts = {
            h.name: template_context(project=project, environment=name, env=env, host=h, release=release, url=url)
            for h in view
        }
        gate = traffic_gate(env, environment=name, contexts=contexts, clock=SystemClock(), observer=NullObserver())
        for host, backend in (gate.backends if gate is not None else {}).items():
            wanted[host].append((backend.host, backend.port))
    return wanted


def _artifact_commit(app: App, digest: str) -> str | None:
    record = app.store.get_artifact(digest)
    return record.commit if record else None


def run_dict(run: RunRecord) -> dict[str, Any]:
    """A run as JSON-ready data."""
    return {
        "id": run.id,
        "kind": run.kind.value,
        "state": run.state.value,
        "commit": run.commit,
        "artifact_digest": run.artifact_digest,
        "triggered_by": run.triggered_by,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
        "error": run.error,
        "merge_request": run.merge_request,  # the request of a merge-request run, else None
        "stages": [
            {
                "name": s.name,
                "kind": s.kind.value,
                "environment": s.environment,
                "state": s.state.value,
                "started_at": s.started_at,
                "finished_at": s.finished_at,
                "duration": (s.finished_at - s.started_at) if s.started_at and s.finished_at else None,
                "error": s.error,
            }
            for s in run.stages
        ],
    }


def history(app: App, *, limit: int = 20, offset: int = 0, state: State | None = None) -> list[dict[str, Any]]:
    """The newest runs (a page of them) with their stages and approvals."""
    runs = app.store.list_runs(limit=limit, offset=offset, project=app.config.project.name, state=state)
    return _with_approvals(app, runs)


def project_run(app: App, run_id: int) -> RunRecord:
    """Run ``run_id`` of this project (NotFound for none, or another project's run in a shared store)."""
    run = app.store.get_run(run_id)
    if run.project != app.config.project.name:
        raise NotFound(f"project {app.config.project.name} has no run {run_id}", hint="'slipway history' lists them")
    return run


def run_view(app: App, run_id: int) -> dict[str, Any]:
    """One run of this project with its stages and approvals; NotFound if this project has no such run."""
    run = project_run(app, run_id)
    approvals = [
        {"stage": a.stage_name, "decision": a.decision.value, "by": a.by, "reason": a.reason, "at": a.at}
        for a in app.store.approvals(run_id)
    ]
    return {**run_dict(run), "approvals": approvals}


def step_dict(stage: str, step: StepRecord) -> dict[str, Any]:
    """One step of a run as JSON-ready data, with its (masked) output."""
    return {
        "id": step.id,
        "stage": stage,
        "name": step.name,
        "host": step.host,
        "command": step.command,
        "state": step.state.value,
        "exit_code": step.exit_code,
        "started_at": step.started_at,
        "finished_at": step.finished_at,
        "duration": step.duration,
        "log": step.log,
    }


def page(items: list[Any], *, total: int, limit: int, offset: int) -> dict[str, Any]:
    """A page of a longer list: its items, how many there are in all, and where the page starts."""
    return {"items": items, "total": total, "limit": limit, "offset": offset}


def runs_page(app: App, *, limit: int = 20, offset: int = 0, state: State | None = None) -> dict[str, Any]:
    """A page of :func:`history` and how many runs there are in all."""
    total = app.store.count_runs(project=app.config.project.name, state=state)
    items = history(app, limit=limit, offset=offset, state=state)
    return page(items, total=total, limit=limit, offset=offset)


def deployments_page(app: App, environment: str | None, *, limit: int = 20, offset: int = 0) -> dict[str, Any]:
    """A page of :func:`deployments` and how many there are in all."""
    items = deployments(app, environment, limit=limit, offset=offset)
    return page(items, total=app.store.count_deployments(environment), limit=limit, offset=offset)


def audit_page(app: App, *, limit: int = 50, offset: int = 0) -> dict[str, Any]:
    """A page of :func:`audit` and how many entries there are in all."""
    return page(audit(app, limit=limit, offset=offset), total=app.store.count_audit(), limit=limit, offset=offset)


def audit(app: App, *, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
    """The newest audit entries: who did what to what, when."""
    return [
        {"id": a.id, "at": a.at, "actor": a.actor, "action": a.action, "subject": a.subject, "detail": a.detail}
        for a in app.store.audit_log(limit=limit, offset=offset)
    ]


def deployments(app: App, environment: str | None, *, limit: int = 20, offset: int = 0) -> list[dict[str, Any]]:
    """Recent deployments with outcome, duration, reason and per-host results."""
    return [
        {
            "id": d.id,
            "environment": d.environment,
            "kind": d.kind.value,
            "strategy": d.strategy,
            "run_id": d.run_id,
            "release": d.release_id,
            "artifact_digest": d.artifact_digest,
            "state": d.state.value,
            "started_at": d.started_at,
            "finished_at": d.finished_at,
            "duration": (d.finished_at - d.started_at) if d.finished_at else None,
            "deployed_by": d.deployed_by,
            "reason": d.reason,
            "hosts": [
                {"host": h.host, "from": h.from_release, "to": h.to_release, "state": h.state.value, "error": h.error}
                for h in d.hosts
            ],
        }
        for d in app.store.deployments(environment, limit=limit, offset=offset)
    ]


def commit_runs_page(app: App, commit: str, *, limit: int = 20, offset: int = 0) -> dict[str, Any]:
    """A commit's value stream: a page of every run of it (pipeline, promotions, rollbacks), newest first,
    with stages and approvals; ``commit`` may be a prefix of the hash."""
    project = app.config.project.name
    runs = app.store.list_runs(limit=limit, offset=offset, project=project, commit=commit)
    items = _with_approvals(app, runs)
    return page(items, total=app.store.count_runs(project=project, commit=commit), limit=limit, offset=offset)


def _with_approvals(app: App, runs: list[RunRecord]) -> list[dict[str, Any]]:
    decided: dict[int, list[dict[str, Any]]] = {run.id: [] for run in runs}
    for a in app.store.approvals_of(list(decided)) if runs else ():
        decided[a.run_id].append(
            {"stage": a.stage_name, "decision": a.decision.value, "by": a.by, "reason": a.reason, "at": a.at}
        )
    return [{**run_dict(run), "approvals": decided[run.id]} for run in runs]


def dashboard(app: App) -> list[dict[str, Any]]:
    """What runs in each environment, for the home page's matrix: :func:`status`'s release, commit,
    digest and since-when, who deployed it, and a ``health``: ``none`` (nothing deployed), ``mixed``
    (hosts differ), or the state of the environment's newest deployment (``failed`` after a failed one,
    while the hosts still run the release before it)."""
    out = []
    for env in status(app)["environments"]:
        newest = app.store.deployments(env["name"], limit=1)
        if env["release"] == "mixed":
            health = "mixed"
        elif newest:
            health = newest[0].state.value
        else:
            health = "none"
        out.append(
            {
                "name": env["name"],
                "release": env["release"],
                "commit": env["commit"],
                "artifact_digest": env["artifact_digest"],
                "deployed_at": env["deployed_at"],
                "run_id": env["run_id"],
                "deployed_by": _deployed_by(app, env, newest[0] if newest else None),
                "health": health,
                "queue": env["queue"],
            }
        )
    return out


def _deployed_by(app: App, env: dict[str, Any], newest: DeploymentRecord | None) -> str | None:
    """Who deployed what runs in ``env``: its deployment's user, else the run's trigger."""
    if newest is not None and newest.id == env["deployment_id"]:
        return newest.deployed_by
    return app.store.get_run(env["run_id"]).triggered_by if env["run_id"] else None


def waiting_page(apps: dict[str, App], *, limit: int = 20, offset: int = 0) -> dict[str, Any]:
    """Runs waiting at a gate across ``apps`` (by project name, then newest first): a page of them, each
    with the environments approving it lets deploy."""
    from slipway.services.accounts import run_environments_ahead

    items: list[dict[str, Any]] = []
    total, skip = 0, offset
    for name in sorted(apps):
        app = apps[name]
        count = app.store.count_runs(project=name, state=State.WAITING)
        total += count
        if skip >= count:
            skip -= count
            continue
        want = limit - len(items)
        if want > 0:
            for run in app.store.list_runs(limit=want, offset=skip, project=name, state=State.WAITING):
                ahead = run_environments_ahead(run)
                items.append({"project": name, "run": _with_approvals(app, [run])[0], "environments": ahead})
        skip = 0
    return page(items, total=total, limit=limit, offset=offset)


def figures(app: App) -> dict[str, Any]:
    """What /metrics reports for this project: runs by state, deployments by (environment, state) and the
    durations (seconds) of the newest 1,000 finished runs by kind and deployments by environment."""
    environments = set(app.config.project.environments)
    run_times: dict[str, list[float]] = {}
    for kind, seconds in app.store.run_durations(project=app.config.project.name):
        run_times.setdefault(kind, []).append(seconds)
    deployment_times: dict[str, list[float]] = {}
    for env, seconds in app.store.deployment_durations():
        if env in environments:
            deployment_times.setdefault(env, []).append(seconds)
    return {
        "runs": app.store.runs_by_state(project=app.config.project.name),
        "deployments": {k: n for k, n in app.store.deployments_by_state().items() if k[0] in environments},
        "run_durations": run_times,
        "deployment_durations": deployment_times,
    }
