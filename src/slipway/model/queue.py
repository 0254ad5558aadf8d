"""What a run does when the environment it deploys is busy: slipway.yml's ``queue`` (docs/config.md, "queue")."""

from __future__ import annotations

from enum import StrEnum

from slipway.model.base import Frozen


class WhenBusy(StrEnum):
    """A deploy stage whose environment another deployment holds."""

    #: Wait in the environment's queue, oldest run first, for at most the stage's timeout.
    WAIT = "wait"
    #: Fail at once with the holder named (exit 11), as before queues existed.
    FAIL = "fail"


class QueuePolicy(Frozen):
    """The pipeline's queue: wait or fail when busy, and whether newer runs supersede older ones."""

    when_busy: WhenBusy = WhenBusy.WAIT
    #: A newer pipeline run supersedes older ones queued for, or waiting at a gate before, the same environment.
    supersede: bool = True
