"""The files Slipway writes for supervisord (pure): the settings each key becomes, quoting, the socket."""

from __future__ import annotations

import configparser

import pytest

from slipway.errors import DeploymentError
from slipway.model.host_services import HostServiceConfig
from slipway.services import supervisor

pytestmark = pytest.mark.timeout(30)


def _section(text: str, name: str) -> dict[str, str]:
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"))  # as supervisord reads it
    parser.read_string(text)
    return {k: v.replace("%%", "%") for k, v in parser[name].items()}


def test_a_program_carries_instances_signal_grace_and_logs() -> None:
    layout = supervisor.Layout("/srv/my app%1")
    service = HostServiceConfig(command="run", port=8000, instances=3, stop_signal="SIGQUIT", stop_timeout=42)
    program = _section(supervisor.program_conf(layout, "web", service), "program:web")
    assert (program["numprocs"], program["stopsignal"], program["stopwaitsecs"]) == ("3", "QUIT", "42")
    assert program["autorestart"] == "true" and program["stopasgroup"] == "true"
    assert program["autostart"] == "false"  # the deployment starts it, once
    assert program["command"] == "/bin/sh '/srv/my app%1/supervisor/programs/web.sh' %(process_num)d"
    assert program["stdout_logfile"] == "/srv/my app%1/shared/log/%(program_name)s-%(process_num)d.log"


def test_the_start_script_quotes_values_and_gives_each_instance_its_port() -> None:
    layout = supervisor.Layout("/srv/app")
    script = supervisor.start_script(layout, "web", "python3 -m app --port $PORT", {"A": "it's; $(x)"}, port=8000)
    assert "cd /srv/app/current || exit 1" in script
    assert "PORT=$((8000 + $1)); export PORT" in script
    assert "A='it'\"'\"'s; $(x)'; export A" in script
    assert script.rstrip().endswith("exec python3 -m app --port $PORT")


def test_the_socket_moves_to_tmp_when_the_root_is_too_long() -> None:
    assert supervisor.Layout("/srv/app").socket == "/srv/app/supervisor/supervisor.sock"
    long = supervisor.Layout("/srv/" + "x" * 100)
    assert long.socket.startswith("/tmp/slipway-supervisor-") and len(long.socket) < 60
    assert supervisor.Layout("/srv/" + "y" * 100).socket != long.socket


def test_a_root_that_supervisords_config_cannot_name_is_refused() -> None:
    with pytest.raises(DeploymentError, match="cannot hold services"):
        supervisor.check_root("/srv/app ;x")
    supervisor.check_root("/srv/app 1")
