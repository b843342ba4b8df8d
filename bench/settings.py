"""Production settings plus one response header for the benchmark: the request's SQL query count.

Only `bin/bench` serves the app with this module (DJANGO_SETTINGS_MODULE=bench.settings); the
header never exists in a production process.
"""

from axiomatic.settings import *  # noqa: F403

MIDDLEWARE = ["bench.middleware.QueryCountMiddleware", *MIDDLEWARE]  # noqa: F405
