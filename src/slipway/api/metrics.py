"""``/metrics`` for Prometheus: read from the state store at each scrape, so runs driven by the CLI, other
servers or workers count as well as this server's.

- ``slipway_runs{project,state}``: runs in each state (``waiting`` are the approvals waiting);
- ``slipway_approvals_waiting{project}``;
- ``slipway_deployments{project,environment,state}``;
- ``slipway_run_duration_seconds{project,kind}`` and ``slipway_deployment_duration_seconds{project,environment}``:
  histograms over the newest 1,000 finished runs and deployments;
- ``slipway_runs_driven{project}``: runs this server process drives right now.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from slipway.services import report
from slipway.services.hub import Hub

BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


def _histogram(name: str, doc: str, labels: list[str], series: dict[tuple[str, ...], list[float]]) -> Metric:
    family = HistogramMetricFamily(name, doc, labels=labels)
    for key, values in sorted(series.items()):
        counts = [sum(1 for v in values if v <= b) for b in BUCKETS]
        buckets = [(str(b), float(c)) for b, c in zip(BUCKETS, counts, strict=True)] + [("+Inf", float(len(values)))]
        family.add_metric(list(key), buckets, sum(values))
    return family


class StoreCollector(Collector):
    """Collects the figures above from every served project's store."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        runs = GaugeMetricFamily("slipway_runs", "Runs in each state.", labels=["project", "state"])
        waiting = GaugeMetricFamily("slipway_approvals_waiting", "Runs waiting at a gate.", labels=["project"])
        deps = GaugeMetricFamily(
            "slipway_deployments", "Deployments in each state.", labels=["project", "environment", "state"]
        )
        driven = GaugeMetricFamily("slipway_runs_driven", "Runs this server drives now.", labels=["project"])
        run_times: dict[tuple[str, ...], list[float]] = {}
        dep_times: dict[tuple[str, ...], list[float]] = {}
        active = self.hub.driver.active()
        for name, app in self.hub.projects.items():
            found = report.figures(app)
            for state, n in sorted(found["runs"].items()):
                runs.add_metric([name, state], n)
            waiting.add_metric([name], found["runs"].get("waiting", 0))
            for (env, state), n in sorted(found["deployments"].items()):
                deps.add_metric([name, env, state], n)
            for kind, seconds in found["run_durations"].items():
                run_times[(name, kind)] = seconds
            for env, seconds in found["deployment_durations"].items():
                dep_times[(name, env)] = seconds
            driven.add_metric([name], sum(1 for project, _ in active if project == name))
        yield from (runs, waiting, deps, driven)
        yield _histogram("slipway_run_duration_seconds", "Durations of finished runs.", ["project", "kind"], run_times)
        yield _histogram(
            "slipway_deployment_duration_seconds", "Durations of finished deployments.", ["project", "environment"], dep_times
        )


def registry_for(hub: Hub) -> CollectorRegistry:
    """A registry holding only Slipway's collector (no process metrics of the test runner's or others')."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(hub))
    return registry
