"""Single steps of a deployment (a hook, an install, a switch) run on a target and recorded in the store.

Every step's output is masked before it is shown, stored or put in an error: secrets never leave here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from slipway.engine.events import Observer
from slipway.engine.masking import Masker
from slipway.errors import CommandFailed, CommandResult, SlipwayError
from slipway.model.states import State
from slipway.ports import StepLog, Target


@dataclass
class StepRunner:
    """Runs single plan steps on targets and records each one in the store."""

    store: StepLog
    stage_id: int
    observer: Observer
    masker: Masker
    env: Mapping[str, str] = field(default_factory=dict)

    async def run_command(
        self,
        target: Target,
        label: str,
        command: str,
        *,
        cwd: str | None,
        timeout: float,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        """Run a shell command as a recorded step; raise CommandFailed on a non-zero exit."""
        shown = self.masker(command)
        step_id = self.store.start_step(self.stage_id, name=self.masker(label), host=target.name, command=shown)
        self.observer.step_started(target.name, self.masker(label))
        lines: list[str] = []

        def sink(stream: str, line: str) -> None:
            masked = self.masker(line)
            lines.append(masked if stream == "stdout" else f"[stderr] {masked}")
            self.observer.output(target.name, stream, masked)

        started = time.monotonic()
        try:
            result = await target.run(
                command, cwd=cwd, env={**self.env, **(env or {})}, timeout=timeout, on_output=sink
            )
        except asyncio.CancelledError:
            self.store.finish_step(step_id, State.CANCELLED, exit_code=None, log="\n".join(lines))
            self.observer.step_finished(target.name, label, State.CANCELLED, None, time.monotonic() - started)
            raise
        except SlipwayError as exc:
            lines.append(self.masker(str(exc)))
            self.store.finish_step(step_id, State.FAILED, exit_code=None, log="\n".join(lines))
            self.observer.step_finished(target.name, label, State.FAILED, None, time.monotonic() - started)
            raise
        state = State.SUCCEEDED if result.ok else State.FAILED
        self.store.finish_step(step_id, state, exit_code=result.exit_code, log="\n".join(lines))
        self.observer.step_finished(target.name, label, state, result.exit_code, time.monotonic() - started)
        if not result.ok:
            masked = CommandResult(
                result.host,
                shown,
                result.exit_code,
                self.masker(result.stdout),
                self.masker(result.stderr),
                result.duration,
            )
            raise CommandFailed.from_result(masked, what=f"{label.split(':')[0]} hook failed")
        return result

    async def run_builtin(self, target: Target, label: str, action: Callable[[], Awaitable[str]]) -> None:
        """Run a built-in action (install, switch) as a recorded step."""
        step_id = self.store.start_step(self.stage_id, name=label, host=target.name, command=label)
        self.observer.step_started(target.name, label)
        started = time.monotonic()
        try:
            note = await action()
        except asyncio.CancelledError:
            self.store.finish_step(step_id, State.CANCELLED, exit_code=None, log="")
            raise
        except SlipwayError as exc:
            self.store.finish_step(step_id, State.FAILED, exit_code=None, log=self.masker(str(exc)))
            self.observer.step_finished(target.name, label, State.FAILED, None, time.monotonic() - started)
            raise
        self.store.finish_step(step_id, State.SUCCEEDED, exit_code=0, log=note)
        if note:
            self.observer.output(target.name, "stdout", note)
        self.observer.step_finished(target.name, label, State.SUCCEEDED, 0, time.monotonic() - started)
