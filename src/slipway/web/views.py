"""The web UI's pages (docs/server.md): thin over the same services as the JSON API."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
