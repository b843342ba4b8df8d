#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "axiomatic.settings")
    # manage.py is the developer's tool: it defaults to DEBUG=1 so a checkout works without secrets.
    # Production sets DEBUG=0 explicitly (the Docker image does); gunicorn and Celery never default it.
    os.environ.setdefault("DEBUG", "1")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
