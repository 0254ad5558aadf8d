#!/usr/bin/env python3
"""Django's command-line utility for the example (Slipway runs showmigrations, migrate and sqlmigrate through it)."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
