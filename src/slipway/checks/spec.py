"""What a check is, as written in slipway.yml: the models live in :mod:`slipway.model.checks`.

They are configuration values, so they belong to the pure model; this module keeps the old import path.
"""

from __future__ import annotations

from slipway.model.checks import SAFE_METHODS as SAFE_METHODS
from slipway.model.checks import Backoff as Backoff
from slipway.model.checks import BreakerPolicy as BreakerPolicy
from slipway.model.checks import CheckKind as CheckKind
from slipway.model.checks import CheckSpec as CheckSpec
from slipway.model.checks import CommandCheck as CommandCheck
from slipway.model.checks import DependencySpec as DependencySpec
from slipway.model.checks import DnsCheck as DnsCheck
from slipway.model.checks import FrozenModel as FrozenModel
from slipway.model.checks import HttpCheck as HttpCheck
from slipway.model.checks import LoadTestSpec as LoadTestSpec
from slipway.model.checks import LoadThresholds as LoadThresholds
from slipway.model.checks import OpenAfterSwitch as OpenAfterSwitch
from slipway.model.checks import SqlCheck as SqlCheck
from slipway.model.checks import TcpCheck as TcpCheck
from slipway.model.checks import check_names as check_names
from slipway.model.checks import is_template as is_template
from slipway.model.checks import parse_checks as parse_checks
from slipway.model.checks import render_scalar as render_scalar
