"""Fixtures for running Microsoft's azure-eventhub SDK against evhub-emulator.

The emulator is either already running (EVHUB_EMULATOR_PORT set, as
scripts/emulator-py-tests.sh does) or started here from EVHUB_EMULATOR_BIN
with emulator-test.toml.
"""

import os
import pathlib
import subprocess
import time

import pytest

from emulator_support import Emulator, start_emulator

HERE = pathlib.Path(__file__).resolve().parent
CONFIG = HERE / "emulator-test.toml"
KEY_NAME = "RootManageSharedAccessKey"
KEY = "emulator-test-key"


@pytest.fixture(scope="session")
def emulator_bin():
    path = os.environ.get("EVHUB_EMULATOR_BIN")
    if not path or not pathlib.Path(path).is_file():
        pytest.fail("EVHUB_EMULATOR_BIN must point to the evhub-emulator binary")
    return path


@pytest.fixture(scope="session")
def emulator(request):
    port = os.environ.get("EVHUB_EMULATOR_PORT")
    if port:
        yield Emulator("127.0.0.1", int(port), KEY_NAME, KEY)
        return
    binary = request.getfixturevalue("emulator_bin")
    proc, emu = start_emulator(binary, ["--config", str(CONFIG), "--port", "0"], KEY_NAME, KEY)
    try:
        yield emu
    finally:
        proc.terminate()
        proc.wait(timeout=10)
