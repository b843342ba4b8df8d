"""The commit-time numbering function again (CREATE OR REPLACE): databases that applied an early
0005_change_feed get the current one, which skips rows an earlier firing already numbered (one
cheap check per row for bulk writes). A no-op where 0005 already installed it."""

import importlib

from django.db import migrations

change_feed = importlib.import_module("axiomatic.migrations.0005_change_feed")


class Migration(migrations.Migration):
    dependencies = [("axiomatic", "0005_change_feed")]

    operations = [migrations.RunPython(change_feed._run(change_feed.FORWARD), migrations.RunPython.noop)]
