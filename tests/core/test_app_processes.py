"""The parsers behind 'slipway app status' and 'slipway app logs' (services/app_processes.py), on the text
supervisorctl and tail print."""

from __future__ import annotations

from slipway.services.app_processes import _TailReader, parse_host_status, parse_status, release_of

STATUS = """web:web-0                        RUNNING   pid 4121, uptime 1 day, 2:03:04
web:web-1                        FATAL     Exited too quickly (process log may have details)
worker:worker-0                  STOPPED   Nov 30 11:00 AM
"""


def test_status_lines() -> None:
    assert parse_status(STATUS) == [
        ("web", "web-0", "RUNNING", 4121, "1 day, 2:03:04", ""),
        ("web", "web-1", "FATAL", None, None, "Exited too quickly (process log may have details)"),
        ("worker", "worker-0", "STOPPED", None, None, "Nov 30 11:00 AM"),
    ]


def test_host_status_names_the_release_each_process_runs() -> None:
    out = f"@@current releases/R2\n{STATUS}@@cwd\n4121 /srv/app/releases/R1\n"
    host = parse_host_status("web1", out)
    assert host.current == "R2" and [p.release for p in host.processes] == ["R1", None, None]
    assert not host.ok  # one process runs an older release, two do not run
    down = parse_host_status("web1", "@@current releases/R2\nunix:///srv/app/supervisor/supervisor.sock no such file\n@@cwd\n")
    assert down.note and "supervisord is not running" in down.note and not down.processes
    assert parse_host_status("web1", "@@none\n").note == "no services were deployed here"
    assert release_of("/srv/app/releases/20260101T000000Z-abc/") == "20260101T000000Z-abc" and release_of("/srv") is None


def test_tail_output_becomes_lines_per_log() -> None:
    seen: list[tuple[str, str, str]] = []
    reader = _TailReader("web1", lambda *line: seen.append(line), lambda s: s.replace("s3cret", "***"))
    for line in ["==> web-0.log <==", "a", "", "b s3cret", "", "==> web-1.log <==", "c"]:
        reader("stdout", line)
    reader("stderr", "tail: web-1.log: file truncated")
    assert seen == [("web1", "web-0", "a"), ("web1", "web-0", ""), ("web1", "web-0", "b ***"), ("web1", "web-1", "c"),
                    ("web1", "tail", "tail: web-1.log: file truncated")]
