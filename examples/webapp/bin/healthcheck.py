"""Wait until URL answers 200 with status ok (and, if given, the expected commit). Usage:
healthcheck.py URL [--commit SHA] [--attempts N]"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request


def main() -> int:
    """Exit 0 when healthy, 1 with the last error otherwise."""
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--commit", default="")
    parser.add_argument("--attempts", type=int, default=50)
    parser.add_argument("--interval", type=float, default=0.1)
    args = parser.parse_args()
    last = ""
    for _ in range(args.attempts):
        try:
            with urllib.request.urlopen(args.url, timeout=2) as resp:
                body = json.loads(resp.read())
            if body.get("status") == "ok" and (not args.commit or body.get("commit") == args.commit):
                print(f"healthy: {args.url} runs {body.get('release')}")
                return 0
            last = f"unexpected answer: {body}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = str(exc)
        time.sleep(args.interval)
    print(f"unhealthy: {args.url}: {last}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
