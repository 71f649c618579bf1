"""Files shipped to every host: the harness script, reporter and browser shim."""

from pathlib import Path

HARNESS_DIR = Path(__file__).parent
HARNESS_FILES = ("traceloom-harness.sh", "reporter.cjs", "browsers.cjs")
