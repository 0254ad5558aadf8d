"""The small JSON path of checks: it lives in :mod:`slipway.model.jsonpath` (pure, used by the check models)."""

from __future__ import annotations

from slipway.model.jsonpath import MISSING as MISSING
from slipway.model.jsonpath import Segment as Segment
from slipway.model.jsonpath import extract_json_path as extract_json_path
from slipway.model.jsonpath import json_equal as json_equal
from slipway.model.jsonpath import parse_json_path as parse_json_path
