"""With --data-dir, events survive a restart with the same sequence numbers,
offsets and enqueued times, and numbering continues afterwards."""

import signal

from azure.eventhub import EventData, EventHubProducerClient

from emulator_support import receive, start_emulator

KEY_NAME = "RootManageSharedAccessKey"
KEY = "restart-test-key"


def run(binary, data_dir):
    return start_emulator(binary, ["--port", "0", "--hub", "durable:2", "--data-dir", str(data_dir)], KEY_NAME, KEY)


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0, "SIGTERM must shut down cleanly"


def test_events_survive_restart(emulator_bin, tmp_path):
    proc, emu = run(emulator_bin, tmp_path)
    try:
        with EventHubProducerClient.from_connection_string(emu.conn_str("durable")) as client:
            batch = client.create_batch(partition_id="1")
            for i in range(4):
                batch.add(EventData(f"durable-{i}"))
            client.send_batch(batch)
        before, errors = receive(emu.conn_str("durable"), 4, partition_id="1", starting_position="-1")
        assert errors == []
    finally:
        stop(proc)

    proc, emu = run(emulator_bin, tmp_path)
    # Restart with data on disk is still well under a second.
    assert emu.startup_seconds < 1.0, emu.startup_seconds
    try:
        after, errors = receive(emu.conn_str("durable"), 4, partition_id="1", starting_position="-1")
        assert errors == []
        summary = lambda events: [(e.body_as_str(), e.sequence_number, e.offset, e.enqueued_time) for _, e in events]
        assert summary(after) == summary(before)
        assert [s for _, s, _, _ in summary(after)] == [0, 1, 2, 3]
        with EventHubProducerClient.from_connection_string(emu.conn_str("durable")) as client:
            props = client.get_partition_properties("1")
            assert props["last_enqueued_sequence_number"] == 3
            assert props["last_enqueued_offset"] == before[-1][1].offset
            client.send_event(EventData("after-restart"), partition_id="1")
            assert client.get_partition_properties("1")["last_enqueued_sequence_number"] == 4
        latest, _ = receive(emu.conn_str("durable"), 1, partition_id="1", starting_position=3)
        assert [(e.body_as_str(), e.sequence_number) for _, e in latest] == [("after-restart", 4)]
    finally:
        stop(proc)
