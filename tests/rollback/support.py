"""Helpers of the rollback tests: an nginx whose reload fails on demand, and the router's state."""

from __future__ import annotations

import asyncio
from pathlib import Path

from slipway.model.routing import RouterState
from slipway.routers.nginx import NginxRouter

#: Runs the real nginx; ``-s reload`` fails (as when the signal cannot be sent) while FAULT holds a count > 0.
FLAKY_NGINX = """\
#!/bin/sh
case " $* " in
  *" -s reload "*)
    n=$(cat {fault} 2>/dev/null || echo 0)
    if [ "$n" -gt 0 ]; then
      echo $((n - 1)) > {fault}
      echo 'nginx: [alert] kill(1, 1) failed (3: No such process): reload refused (injected by the test)' >&2
      exit 1
    fi;;
esac
exec {nginx} "$@"
"""


def flaky_nginx(directory: Path, nginx: str) -> tuple[Path, Path]:
    """A wrapper around the real ``nginx`` and its fault file: write N into the file to fail the next N reloads."""
    fault = directory / "reload-fault"
    wrapper = directory / "nginx-flaky"
    wrapper.write_text(FLAKY_NGINX.format(fault=fault, nginx=nginx))
    wrapper.chmod(0o755)
    return wrapper, fault


def router_state(conf_dir: Path, nginx: str, group: str = "app") -> RouterState:
    """What the include file of ``group`` says (the router's own reading)."""
    router = NginxRouter(conf_dir=conf_dir, nginx=nginx)
    return asyncio.run(asyncio.wait_for(router.current(group), 30))
