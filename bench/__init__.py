"""The benchmark: `bin/bench [SCALE]` (bench/run.py) and the settings it serves the app with."""
