#!/usr/bin/env python
"""Run Django administrative tasks."""

import os
import sys


def main() -> None:
    """Run the command line with the local settings unless told otherwise."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashsale.settings.base")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
