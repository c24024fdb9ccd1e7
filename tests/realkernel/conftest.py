import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kernelhelp import ZRAM_RUN


@pytest.fixture(scope="session")
def zram_run():
    from mmplug.realkernel.kernelside import read_run
    return read_run(ZRAM_RUN)
