"""Microsoft's azure-eventhub SDK against evhub-emulator: properties, sending,
receiving from every kind of start position, epochs, limits and errors."""

import datetime
import threading
import time

import pytest
from azure.eventhub import EventData, EventHubConsumerClient, EventHubProducerClient
from azure.eventhub.exceptions import (
    AuthenticationError,
    ConnectError,
    EventDataSendError,
    EventHubError,
)

from emulator_support import receive


def producer(emulator, hub, **kwargs):
    return EventHubProducerClient.from_connection_string(emulator.conn_str(hub), **kwargs)


def send(emulator, hub, bodies, **batch_kwargs):
    with producer(emulator, hub) as client:
        batch = client.create_batch(**batch_kwargs)
        for body in bodies:
            batch.add(EventData(body))
        client.send_batch(batch)


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def test_eventhub_properties(emulator):
    with producer(emulator, "props") as client:
        props = client.get_eventhub_properties()
        assert props["eventhub_name"] == "props"
        assert props["partition_ids"] == ["0", "1", "2"]
        assert now() - datetime.timedelta(hours=1) < props["created_at"] <= now()
        assert client.get_partition_ids() == ["0", "1", "2"]


def test_partition_properties_before_and_after_send(emulator):
    with producer(emulator, "partprops") as client:
        empty = client.get_partition_properties("0")
        assert empty["eventhub_name"] == "partprops"
        assert empty["id"] == "0"
        assert empty["is_empty"] is True
        assert empty["beginning_sequence_number"] == 0
        assert empty["last_enqueued_sequence_number"] == -1
        assert empty["last_enqueued_offset"] == "-1"

        before = now() - datetime.timedelta(seconds=5)
        batch = client.create_batch(partition_id="1")
        for i in range(3):
            batch.add(EventData(f"e{i}"))
        client.send_batch(batch)

        props = client.get_partition_properties("1")
        assert props["id"] == "1"
        assert props["is_empty"] is False
        assert props["beginning_sequence_number"] == 0
        assert props["last_enqueued_sequence_number"] == 2
        assert int(props["last_enqueued_offset"]) > 0
        assert before <= props["last_enqueued_time_utc"] <= now() + datetime.timedelta(seconds=5)
        # Partition 0 is untouched.
        assert client.get_partition_properties("0")["is_empty"] is True


def test_send_batch_to_partition_id(emulator):
    bodies = [f"p2-{i}" for i in range(5)]
    send(emulator, "bypartition", bodies, partition_id="2")
    with producer(emulator, "bypartition") as client:
        counts = [client.get_partition_properties(p)["last_enqueued_sequence_number"] for p in "0123"]
    assert counts == [-1, -1, 4, -1]
    events, errors = receive(emulator.conn_str("bypartition"), 5, partition_id="2", starting_position="-1")
    assert errors == []
    assert [e.body_as_str() for _, e in events] == bodies
    assert [e.sequence_number for _, e in events] == [0, 1, 2, 3, 4]
    assert all(p == "2" for p, _ in events)
    offsets = [int(e.offset) for _, e in events]
    assert offsets == sorted(offsets) and len(set(offsets)) == 5


def test_same_partition_key_lands_on_same_partition(emulator):
    for round_ in range(3):
        send(emulator, "bykey", [f"a-{round_}-{i}" for i in range(2)], partition_key="key-A")
        send(emulator, "bykey", [f"b-{round_}"], partition_key="key-B")
    events, errors = receive(emulator.conn_str("bykey"), 9, starting_position="-1")
    assert errors == []
    assert len(events) == 9
    partitions_a = {p for p, e in events if e.body_as_str().startswith("a-")}
    partitions_b = {p for p, e in events if e.body_as_str().startswith("b-")}
    assert len(partitions_a) == 1 and len(partitions_b) == 1
    for _, e in events:
        expected = b"key-A" if e.body_as_str().startswith("a-") else b"key-B"
        assert e.partition_key in (expected, expected.decode())
    # Order within the key's partition is preserved.
    a_bodies = [e.body_as_str() for _, e in sorted(events, key=lambda pe: pe[1].sequence_number) if e.body_as_str().startswith("a-")]
    assert a_bodies == [f"a-{r}-{i}" for r in range(3) for i in range(2)]


def test_send_without_key_round_robins(emulator):
    with producer(emulator, "roundrobin") as client:
        for i in range(8):
            batch = client.create_batch()
            batch.add(EventData(f"rr-{i}"))
            client.send_batch(batch)
        per_partition = [client.get_partition_properties(p)["last_enqueued_sequence_number"] + 1 for p in "0123"]
    assert per_partition == [2, 2, 2, 2]


def test_send_event_with_partition_key_and_single_events(emulator):
    with producer(emulator, "bykey") as client:
        before = {p: client.get_partition_properties(p)["last_enqueued_sequence_number"] for p in "0123"}
        client.send_event(EventData("single-A"), partition_key="key-A")
        after = {p: client.get_partition_properties(p)["last_enqueued_sequence_number"] for p in "0123"}
    changed = [p for p in "0123" if after[p] != before[p]]
    assert len(changed) == 1
    # key-A's partition from the batch test (same hub) is the one that grew.
    events, _ = receive(emulator.conn_str("bykey"), 1, partition_id=changed[0], starting_position=after[changed[0]], starting_position_inclusive=True)
    assert [e.body_as_str() for _, e in events] == ["single-A"]
    assert events[0][1].partition_key in (b"key-A", "key-A")


def test_application_properties_round_trip(emulator):
    event = EventData("with-props")
    event.properties = {"text": "value", "number": 42, "ratio": 1.5, "flag": True}
    event.content_type = "application/json"
    event.correlation_id = "corr-1"
    event.message_id = "msg-1"
    with producer(emulator, "appprops") as client:
        client.send_event(event, partition_id="1")
    events, errors = receive(emulator.conn_str("appprops"), 1, partition_id="1", starting_position="-1")
    assert errors == []
    received = events[0][1]
    assert received.body_as_str() == "with-props"
    props = {k.decode() if isinstance(k, bytes) else k: v for k, v in received.properties.items()}
    assert props["text"] in (b"value", "value")
    assert props["number"] == 42
    assert props["ratio"] == 1.5
    assert props["flag"] is True
    assert received.content_type == "application/json"
    assert received.correlation_id == "corr-1"
    assert received.message_id == "msg-1"
    assert received.sequence_number == 0
    assert received.offset == "0"
    assert abs((received.enqueued_time - now()).total_seconds()) < 60


@pytest.fixture(scope="module")
def positions(emulator):
    """Six events in the single partition of hub 'positions'."""
    send(emulator, "positions", [f"pos-{i}" for i in range(6)], partition_id="0")
    events, errors = receive(emulator.conn_str("positions"), 6, partition_id="0", starting_position="-1")
    assert errors == []
    return [e for _, e in events]


def test_receive_from_start(positions):
    assert [e.body_as_str() for e in positions] == [f"pos-{i}" for i in range(6)]
    assert [e.sequence_number for e in positions] == list(range(6))


@pytest.mark.parametrize("inclusive,expected", [(True, [2, 3, 4, 5]), (False, [3, 4, 5])])
def test_receive_from_sequence_number(emulator, positions, inclusive, expected):
    events, errors = receive(
        emulator.conn_str("positions"), len(expected), partition_id="0",
        starting_position=2, starting_position_inclusive=inclusive,
    )
    assert errors == []
    assert [e.sequence_number for _, e in events] == expected
    assert [e.body_as_str() for _, e in events] == [f"pos-{i}" for i in expected]


@pytest.mark.parametrize("inclusive,expected", [(True, [3, 4, 5]), (False, [4, 5])])
def test_receive_from_offset(emulator, positions, inclusive, expected):
    offset = positions[3].offset
    events, errors = receive(
        emulator.conn_str("positions"), len(expected), partition_id="0",
        starting_position=offset, starting_position_inclusive=inclusive,
    )
    assert errors == []
    assert [e.sequence_number for _, e in events] == expected


def test_receive_from_latest_gets_only_new_events(emulator):
    send(emulator, "latest", ["old-0", "old-1"], partition_id="0")
    ready = threading.Event()
    result = {}

    def run():
        result["value"] = receive(emulator.conn_str("latest"), 2, partition_id="0", starting_position="@latest", ready=ready)

    thread = threading.Thread(target=run)
    thread.start()
    assert ready.wait(20), "receiver never reported in"
    send(emulator, "latest", ["new-0", "new-1"], partition_id="0")
    thread.join(30)
    events, errors = result["value"]
    assert errors == []
    assert [e.body_as_str() for _, e in events] == ["new-0", "new-1"]
    assert [e.sequence_number for _, e in events] == [2, 3]


def test_receive_from_enqueued_time(emulator):
    send(emulator, "enqtime", ["early-0", "early-1"], partition_id="0")
    time.sleep(0.05)
    early, _ = receive(emulator.conn_str("enqtime"), 2, partition_id="0", starting_position="-1")
    cutoff = early[-1][1].enqueued_time
    time.sleep(0.05)
    send(emulator, "enqtime", ["late-0", "late-1"], partition_id="0")
    events, errors = receive(emulator.conn_str("enqtime"), 2, partition_id="0", starting_position=cutoff)
    assert errors == []
    assert [e.body_as_str() for _, e in events] == ["late-0", "late-1"]
    # Inclusive also returns the events enqueued exactly at the cutoff: both
    # early events came in one batch and share its enqueued time.
    assert early[0][1].enqueued_time == cutoff
    events, _ = receive(emulator.conn_str("enqtime"), 4, partition_id="0", starting_position=cutoff, starting_position_inclusive=True)
    assert [e.body_as_str() for _, e in events] == ["early-0", "early-1", "late-0", "late-1"]


def test_consumer_client_receives_all_partitions(emulator):
    expected = set()
    with producer(emulator, "allparts") as client:
        for partition in "0123":
            batch = client.create_batch(partition_id=partition)
            for i in range(2):
                body = f"part{partition}-{i}"
                batch.add(EventData(body))
                expected.add((partition, body))
            client.send_batch(batch)
    events, errors = receive(emulator.conn_str("allparts"), 8, starting_position="-1")
    assert errors == []
    assert {(p, e.body_as_str()) for p, e in events} == expected


def test_epoch_reader_steals_partition(emulator):
    first_ready = threading.Event()
    first = {}

    def run_first():
        first["value"] = receive(emulator.conn_str("epoch"), 100, timeout=15, partition_id="0",
                                 starting_position="@latest", owner_level=1, ready=first_ready)

    thread = threading.Thread(target=run_first)
    thread.start()
    assert first_ready.wait(20)
    second_ready = threading.Event()
    second = {}

    def run_second():
        second["value"] = receive(emulator.conn_str("epoch"), 1, timeout=20, partition_id="0",
                                  starting_position="@latest", owner_level=2, ready=second_ready)

    thread2 = threading.Thread(target=run_second)
    thread2.start()
    assert second_ready.wait(20)
    time.sleep(0.5)
    send(emulator, "epoch", ["after-steal"], partition_id="0")
    thread2.join(30)
    thread.join(30)
    first_events, first_errors = first["value"]
    second_events, second_errors = second["value"]
    assert [e.body_as_str() for _, e in second_events] == ["after-steal"]
    assert second_errors == []
    assert first_events == []
    assert first_errors, "the lower epoch reader must be disconnected"
    text = " ".join(str(e) for e in first_errors)
    assert "amqp:link:stolen" in text and "epoch of '2'" in text, text


def test_batch_respects_advertised_max_size(emulator):
    with producer(emulator, "oversize") as client:
        batch = client.create_batch()
        assert batch.max_size_in_bytes == 1024 * 1024
        with pytest.raises(ValueError):
            batch.add(EventData(b"x" * (1024 * 1024 + 1)))


def test_oversize_event_rejected_by_service(emulator):
    with producer(emulator, "oversize", retry_total=0) as client:
        with pytest.raises(EventDataSendError) as info:
            client.send_event(EventData(b"x" * (1024 * 1024 + 100)), partition_id="0")
        assert "message-size-exceeded" in str(info.value)
        # Nothing was stored, and a normal event still goes through afterwards.
        assert client.get_partition_properties("0")["is_empty"] is True
        client.send_event(EventData(b"small"), partition_id="0")
        assert client.get_partition_properties("0")["last_enqueued_sequence_number"] == 0


def test_wrong_sas_key_is_an_authentication_error(emulator):
    conn = emulator.conn_str("auth", key="not-the-right-key")
    with EventHubProducerClient.from_connection_string(conn, retry_total=0) as client:
        with pytest.raises(AuthenticationError):
            client.get_eventhub_properties()
        with pytest.raises(AuthenticationError):
            client.send_event(EventData("nope"), partition_id="0")
    with producer(emulator, "auth") as client:
        assert client.get_partition_properties("0")["is_empty"] is True


def test_unknown_hub_is_an_error(emulator):
    with EventHubProducerClient.from_connection_string(emulator.conn_str("no-such-hub"), retry_total=0) as client:
        with pytest.raises(EventHubError) as info:
            client.get_eventhub_properties()
        assert "404" in str(info.value) or "could not be found" in str(info.value)
        with pytest.raises(ConnectError):
            client.send_event(EventData("nowhere"))
