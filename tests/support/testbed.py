"""The binaries the test benches start, and the one clear failure when one is missing.

The benches never install packages themselves: ``make testbed`` (``sh scripts/install-testbed.sh``, run
as root) is the one place that calls apt-get, and ``make test`` runs it first.
"""

from __future__ import annotations

import os

INSTALL_HINT = "run `make testbed` (or `sh scripts/install-testbed.sh` as root) to install the test bed"


class MissingTestbed(RuntimeError):
    """A binary of the test bed is not installed on this machine."""


def missing_testbed(what: str, package: str) -> MissingTestbed:
    """The error for a missing binary ``what`` from the Debian ``package``, with the way to install it."""
    return MissingTestbed(f"{what} not found (Debian package {package}): {INSTALL_HINT}")


def require(path: str, package: str) -> str:
    """Return ``path`` when it is an executable, else raise :class:`MissingTestbed` naming ``package``."""
    if not os.access(path, os.X_OK):
        raise missing_testbed(path, package)
    return path
