"""Helpers of the container tests: the session's published images and a bounded load client."""

from __future__ import annotations

import asyncio
import http.client
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from tests.support.podman import HTTP_PORT, PodmanService, app_context
from tests.support.registry import RegistryServer

from slipway.artifacts.image import (
    BuiltImage,
    Engine,
    EngineSpec,
    ImageRef,
    PublishedImage,
    Registry,
    SmokeTest,
    build_image,
    publish_image,
    push_image,
)
from slipway.checks.spec import Backoff, HttpCheck

#: A check of the container under test, as slipway.yml would write it.
HEALTH = HttpCheck(url=f"http://container:{HTTP_PORT}/health", body_contains="ok", timeout=2, retries=12,
                   backoff=Backoff(initial=0.05, factor=1.5, max=0.25))
SMOKE = SmokeTest(checks=(HEALTH,))
BAD_COMMIT = "bad0000000000000000000000000000000000000"


@dataclass(frozen=True)
class PublishedSet:
    """The session's images: v1 and v2 published normally, bad pushed without its smoke test."""

    registry: str
    v1: PublishedImage
    v2: PublishedImage
    bad: ImageRef
    bad_built: BuiltImage


def context(version: str, *, healthy: bool = True) -> bytes:
    """The build context of test app ``version`` (no /health when not healthy)."""
    return app_context(version=version, health="ok\n" if healthy else None)


def publish_test_images(podman: PodmanService, registry: RegistryServer) -> PublishedSet:
    """Build, smoke test and push v1 and v2; build and push 'bad' (which would fail its smoke test)."""
    async def main() -> PublishedSet:
        async with await Engine.open(EngineSpec(podman.base_url, name="podman")) as engine:
            reg = Registry(registry.address)
            v1 = await publish_image(engine, context("v1"), name="app", commit="1" * 40, registry=reg, smoke=SMOKE)
            v2 = await publish_image(engine, context("v2"), name="app", commit="2" * 40, registry=reg, smoke=SMOKE)
            bad_built = await build_image(engine, context("bad", healthy=False), repository="localhost/slipway/app",
                                          commit=BAD_COMMIT)
            bad = await push_image(engine, bad_built, reg, name="app")
            return PublishedSet(registry.address, v1, v2, bad, bad_built)

    return asyncio.run(main())


@dataclass
class LoadResult:
    """What the load saw: answers by body, and failures with their reasons."""

    answers: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    sequence: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Requests sent."""
        return sum(self.answers.values()) + len(self.failures)


class Load:
    """A bounded load: one new connection per request (no keep-alive: see docs/strategies.md)."""

    def __init__(self, port: int, *, path: str = "/version", max_requests: int = 5000, max_seconds: float = 90):
        self.port = port
        self.path = path
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.result = LoadResult()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _one(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", self.path, headers={"Connection": "close"})
            response = conn.getresponse()
            body = response.read().decode(errors="replace").strip()
            if response.status != 200:
                self.result.failures.append(f"HTTP {response.status}: {body[:80]}")
            else:
                self.result.answers[body] += 1
                if not self.result.sequence or self.result.sequence[-1] != body:
                    self.result.sequence.append(body)
        except (OSError, http.client.HTTPException) as exc:
            self.result.failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and self.result.total < self.max_requests and time.monotonic() < deadline:
            self._one()
            self._stop.wait(0.0025)  # paced, as tests/support/load.py says why

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
