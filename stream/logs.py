"""One log format for every process of the system: the CLI's and the workers' children."""

from __future__ import annotations

import logging
import sys


def configure_logging(level: str) -> None:
    """Log lines with time, level and logger name to stderr, at ``level`` and above."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
