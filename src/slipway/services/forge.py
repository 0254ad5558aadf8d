"""Commit statuses on the forge (GitHub, GitLab, Gitea, Forgejo) for merge-request runs.

Sent in the background like notifications (services/notifier.py): a forge that is slow or down never
holds up a run; a status that could not be set is a warning and a ``forge.status_failed`` audit entry.
"""

from __future__ import annotations

from slipway.model.triggers import TriggerSpec, status_request
from slipway.services.app import App
from slipway.services.notifier import Delivery
from slipway.services.secrets import resolve_ref


def report_status(app: App, triggers: TriggerSpec, *, commit: str, state: str, description: str, run_id: int) -> bool:
    """Set ``commit``'s status (pending, success, failure, error) on the forge; False when no forge is
    configured (``triggers.forge``). Returns at once."""
    spec = triggers.forge
    if spec is None:
        return False
    token = resolve_ref(spec.token, name="triggers.forge.token", where="triggers.forge.token", root=app.root,
                        environ=app.environ)
    app.masker.add([token])
    link = f"{spec.server_url}/projects/{app.config.project.name}/runs/{run_id}" if spec.server_url else None
    request = status_request(spec, token, commit=commit, state=state, description=description, target_url=link)
    name = f"{spec.kind.value} commit status of {commit[:12]}"

    def failed(error: str) -> None:
        app.observer.message(f"warning: could not set the {name}: {error}")
        app.store.audit(app.settings.actor, "forge.status_failed", f"run {run_id}",
                        {"commit": commit, "state": state, "error": error})

    app.notifier.submit(Delivery(request, name, None, request.body, app.masker, failed))
    return True
