"""evhub's `eventhubs` backend and Microsoft's Python processor (azure-eventhub with
azure-eventhub-checkpointstoreblob-aio) sharing consumer groups through one Azurite container,
against the evhub emulator:

- Python checkpoints, then evhub resumes right after Python's last checkpoint;
- evhub checkpoints, then Python resumes right after evhub's last checkpoint;
- both in one group at once: every event is read once while both run, and nothing is lost
  when evhub leaves.

Run by scripts/eventhubs-interop-tests.sh, which starts the emulator and Azurite and builds the
evhub side (`cargo run -p evhub-eventhubs --example group_member`). Every wait is bounded.
"""

import asyncio
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
import uuid

import pytest
from azure.eventhub import EventData, EventHubProducerClient
from azure.eventhub.aio import EventHubConsumerClient
from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore
from azure.eventhub.extensions.checkpointstoreblobaio._vendor.storage.blob.aio import (
    ContainerClient,
)

EMULATOR_PORT = int(os.environ["EVHUB_INTEROP_EMULATOR_PORT"])
MEMBER_BIN = os.environ["EVHUB_INTEROP_MEMBER_BIN"]
AZ_CS = os.environ["EVHUB_TEST_AZURITE_CONNECTION_STRING"]
AZ_ACCOUNT = os.environ.get("EVHUB_TEST_AZURITE_ACCOUNT", "devstoreaccount1")
AZ_KEY = os.environ["EVHUB_TEST_AZURITE_KEY"]
AZ_ENDPOINT = os.environ["EVHUB_TEST_AZURITE_BLOB_ENDPOINT"]
# The emulator runs with --no-auth; any base64 key will do.
EH_CS = (
    f"Endpoint=sb://127.0.0.1:{EMULATOR_PORT}/;SharedAccessKeyName=RootManageSharedAccessKey;"
    "SharedAccessKey=ZW11bGF0b3Ita2V5;UseDevelopmentEmulator=true"
)
# Microsoft's Python SDK names the namespace of an emulator endpoint with its port.
NAMESPACE = f"127.0.0.1:{EMULATOR_PORT}"
PARTITIONS = 2
GROUP = "$Default"


def hub_name(case):
    # Hubs are created by the script (--hub interop-<case>:2).
    return f"interop-{case}"


async def new_container():
    name = "interop-" + uuid.uuid4().hex[:12]
    async with ContainerClient.from_connection_string(AZ_CS, name) as container:
        await container.create_container()
    return name


def send(hub, payloads_by_partition):
    producer = EventHubProducerClient.from_connection_string(EH_CS, eventhub_name=hub)
    with producer:
        for partition, payloads in payloads_by_partition.items():
            if not payloads:
                continue
            batch = producer.create_batch(partition_id=str(partition))
            for payload in payloads:
                batch.add(EventData(payload))
            producer.send_batch(batch)


def spread(prefix, count):
    """count events named prefix-i, split over the partitions."""
    by_partition = {p: [] for p in range(PARTITIONS)}
    for i in range(count):
        by_partition[i % PARTITIONS].append(f"{prefix}-{i}")
    return by_partition


def flat(by_partition):
    return sorted(p for payloads in by_partition.values() for p in payloads)


class PythonMember:
    """Microsoft's processor in this process, checkpointing every event it reads."""

    def __init__(self, hub, container):
        self.seen = []
        self.client = EventHubConsumerClient.from_connection_string(
            EH_CS,
            consumer_group=GROUP,
            eventhub_name=hub,
            checkpoint_store=BlobCheckpointStore.from_connection_string(AZ_CS, container),
            load_balancing_interval=2,
            partition_ownership_expiration_interval=20,
            load_balancing_strategy="greedy",
        )
        self.task = None

    async def on_event(self, context, event):
        if event is None:
            return
        self.seen.append(event.body_as_str())
        await context.update_checkpoint(event)

    def start(self):
        self.task = asyncio.ensure_future(
            self.client.receive(on_event=self.on_event, starting_position="-1")
        )

    async def wait_for(self, count, timeout):
        deadline = time.monotonic() + timeout
        while len(self.seen) < count:
            if self.task is not None and self.task.done():
                self.task.result()
            assert time.monotonic() < deadline, (
                f"python read {len(self.seen)} of {count} events within {timeout}s"
            )
            await asyncio.sleep(0.1)

    async def stop(self):
        await asyncio.wait_for(self.client.close(), 30)
        if self.task is not None:
            await asyncio.wait_for(self.task, 30)


class EvhubMember:
    """The evhub example member in a subprocess, committing every event it prints."""

    def __init__(self, hub, container, count=None):
        self.config = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
        self.config.write(
            "\n".join(
                [
                    'backend = "eventhubs"',
                    f'connection_string = "{EH_CS}"',
                    f'checkpoint_store = "az://{container}"',
                    f'checkpoint_namespace = "{NAMESPACE}"',
                    "load_balancing_interval_ms = 2000",
                    "partition_ownership_expiration_interval_ms = 20000",
                    'load_balancing_strategy = "greedy"',
                    "operation_timeout_ms = 20000",
                    "[checkpoint_store_options]",
                    f'azure_storage_account_name = "{AZ_ACCOUNT}"',
                    f'azure_storage_account_key = "{AZ_KEY}"',
                    f'azure_storage_endpoint = "{AZ_ENDPOINT}"',
                    'azure_allow_http = "true"',
                    "",
                ]
            )
        )
        self.config.close()
        args = [MEMBER_BIN, self.config.name, hub, GROUP]
        if count is not None:
            args.append(str(count))
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.seen = []
        self.ready = threading.Event()
        self.stderr = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.strip()
            if line == "ready":
                self.ready.set()
            elif line:
                self.seen.append(json.loads(line)["payload"])

    def _read_err(self):
        log_dir = os.environ.get("EVHUB_INTEROP_LOG_DIR")
        log = open(os.path.join(log_dir, f"member-{os.getpid()}-{id(self)}.log"), "a") if log_dir else None
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip())
            if log:
                log.write(line)
                log.flush()

    def describe(self):
        return "\n".join(self.stderr[-20:])

    async def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while not self.ready.is_set():
            assert self.proc.poll() is None, f"evhub member exited:\n{self.describe()}"
            assert time.monotonic() < deadline, "evhub member not ready"
            await asyncio.sleep(0.1)

    async def wait_for(self, count, timeout):
        deadline = time.monotonic() + timeout
        while len(self.seen) < count:
            assert time.monotonic() < deadline, (
                f"evhub read {len(self.seen)} of {count} events within {timeout}s:\n"
                f"{self.describe()}"
            )
            if self.proc.poll() is not None and len(self.seen) < count:
                raise AssertionError(f"evhub member exited early:\n{self.describe()}")
            await asyncio.sleep(0.1)

    async def wait_exit(self, timeout=60):
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            assert time.monotonic() < deadline, "evhub member did not exit"
            await asyncio.sleep(0.1)
        assert self.proc.returncode == 0, f"evhub member failed:\n{self.describe()}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        os.unlink(self.config.name)


async def ownership_owners(container, hub):
    """partition -> owner id of the group's ownership blobs (Microsoft's layout)."""
    prefix = f"{NAMESPACE}/{hub}/{GROUP}/ownership/".lower()
    owners = {}
    async with ContainerClient.from_connection_string(AZ_CS, container) as client:
        async for blob in client.list_blobs(name_starts_with=prefix, include=["metadata"]):
            owners[blob.name.split("/")[-1]] = blob.metadata["ownerid"]
    return owners


def test_python_checkpoints_then_evhub_resumes():
    asyncio.run(python_then_evhub())


async def python_then_evhub():
    hub = hub_name("py2ev")
    container = await new_container()
    first = spread("py-first", 10)
    send(hub, first)
    python = PythonMember(hub, container)
    python.start()
    await python.wait_for(10, 60)
    await python.stop()
    assert sorted(python.seen) == flat(first)

    second = spread("py-second", 10)
    send(hub, second)
    evhub = EvhubMember(hub, container, count=10)
    try:
        await evhub.wait_for(10, 90)
        await evhub.wait_exit()
    finally:
        evhub.kill()
    # Exactly the events after Python's checkpoints: none of the first ten again.
    assert sorted(evhub.seen) == flat(second), evhub.seen


def test_evhub_checkpoints_then_python_resumes():
    asyncio.run(evhub_then_python())


async def evhub_then_python():
    hub = hub_name("ev2py")
    container = await new_container()
    first = spread("ev-first", 10)
    send(hub, first)
    evhub = EvhubMember(hub, container, count=10)
    try:
        await evhub.wait_for(10, 90)
        await evhub.wait_exit()
    finally:
        evhub.kill()
    assert sorted(evhub.seen) == flat(first), evhub.seen

    second = spread("ev-second", 10)
    send(hub, second)
    python = PythonMember(hub, container)
    python.start()
    try:
        await python.wait_for(10, 60)
        # Anything beyond the ten would be a re-read of evhub's checkpointed events.
        await asyncio.sleep(3)
    finally:
        await python.stop()
    assert sorted(python.seen) == flat(second), python.seen


def test_both_in_one_group():
    asyncio.run(both_in_one_group())


async def both_in_one_group():
    hub = hub_name("both")
    container = await new_container()
    evhub = EvhubMember(hub, container)
    python = PythonMember(hub, container)
    try:
        await evhub.wait_ready()
        python.start()
        # Settle: each side owns one partition (ownership claims honoured both ways).
        deadline = time.monotonic() + 60
        while True:
            owners = await ownership_owners(container, hub)
            distinct = {o for o in owners.values() if o}
            if len(owners) == PARTITIONS and len(distinct) == 2:
                break
            assert time.monotonic() < deadline, f"group did not settle: {owners}"
            await asyncio.sleep(0.5)
        print(f"settled: {owners}")

        while_both = spread("both", 100)
        send(hub, while_both)
        deadline = time.monotonic() + 90
        while len(evhub.seen) + len(python.seen) < 100:
            assert time.monotonic() < deadline, (
                f"read {len(evhub.seen)} (evhub) + {len(python.seen)} (python) of 100:\n"
                f"{evhub.describe()}"
            )
            await asyncio.sleep(0.1)
        await asyncio.sleep(3)  # duplicates would show up now
        union = sorted(evhub.seen + python.seen)
        assert union == flat(while_both), "every event exactly once while both run"
        assert evhub.seen and python.seen, "both members read"
        print(f"while both run: evhub {len(evhub.seen)}, python {len(python.seen)}, duplicates 0")

        # evhub leaves (SIGTERM: commits, releases its partitions); Python takes over.
        evhub.stop()
        await evhub.wait_exit()
        after = spread("after", 40)
        send(hub, after)
        before = len(python.seen)
        deadline = time.monotonic() + 90
        while not set(flat(after)) <= set(python.seen):
            assert time.monotonic() < deadline, (
                f"python read {len(set(flat(after)) & set(python.seen))} of 40 after evhub left"
            )
            await asyncio.sleep(0.1)
        late = python.seen[before:]
        duplicates = len(late) - len(set(late))
        lost = len(set(flat(after)) - set(late))
        print(f"after evhub left: events=40 lost={lost} duplicates={duplicates}")
        assert lost == 0
    finally:
        evhub.kill()
        await python.stop()


def test_python_leaves_and_evhub_takes_over():
    asyncio.run(python_leaves())


async def python_leaves():
    hub = hub_name("pyleaves")
    container = await new_container()
    evhub = EvhubMember(hub, container)
    python = PythonMember(hub, container)
    try:
        await evhub.wait_ready()
        python.start()
        deadline = time.monotonic() + 60
        while True:
            owners = await ownership_owners(container, hub)
            if len(owners) == PARTITIONS and len({o for o in owners.values() if o}) == 2:
                break
            assert time.monotonic() < deadline, f"group did not settle: {owners}"
            await asyncio.sleep(0.5)
        first = spread("pyleaves-first", 20)
        send(hub, first)
        deadline = time.monotonic() + 90
        while len(evhub.seen) + len(python.seen) < 20:
            assert time.monotonic() < deadline, "first events not read"
            await asyncio.sleep(0.1)
        # Python leaves (its processor releases its partition); evhub takes it over from
        # Python's checkpoint.
        await python.stop()
        before = len(evhub.seen)
        after = spread("pyleaves-after", 20)
        send(hub, after)
        deadline = time.monotonic() + 90
        while not set(flat(after)) <= set(evhub.seen):
            assert time.monotonic() < deadline, (
                f"evhub read {len(set(flat(after)) & set(evhub.seen))} of 20 after python left:\n"
                f"{evhub.describe()}"
            )
            await asyncio.sleep(0.1)
        late = evhub.seen[before:]
        lost = len(set(flat(after)) - set(late))
        duplicates = len(late) - len(set(late))
        again = set(late) & set(flat(first))
        print(f"after python left: events=20 lost={lost} duplicates={duplicates}")
        assert lost == 0
        assert not again, f"events checkpointed before python left were read again: {again}"
    finally:
        evhub.kill()
        if python.task is not None and not python.task.done():
            await python.stop()
