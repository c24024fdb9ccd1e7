"""Paths of the real-kernel tests' fixtures: the files a zram run of Debian's 6.1 guest kept."""

from pathlib import Path

FIXTURES = Path(__file__).with_name("fixtures")
ZRAM_RUN = FIXTURES / "zram-6.1"
