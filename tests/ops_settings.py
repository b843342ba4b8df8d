"""Settings for the gunicorn processes that tests/test_operations.py starts: the test settings
with the test-only views of tests/ops_urls.py mounted."""

from tests.settings import *  # noqa: F403

ROOT_URLCONF = "tests.ops_urls"
