"""Paths of the real-kernel tests' fixtures: the files a zram run of Debian's 6.1 guest kept."""

from pathlib import Path

FIXTURES = Path(__file__).with_name("fixtures")
ZRAM_RUN = FIXTURES / "zram-6.1"
#: a zram run kept before the probe's compaction hooks, whose shell allocated between the
#: probe's record and compact_memory (the pages of one per-cpu batch missed compaction)
ZRAM_RECORD_GAP_RUN = FIXTURES / "zram-6.1-record-gap"
