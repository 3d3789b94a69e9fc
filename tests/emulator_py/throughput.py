"""Send + receive throughput of one Python SDK client (azure-eventhub) against
the emulator, with 1 KiB events. Not collected by pytest (no test_ prefix).

    python throughput.py CONNECTION_STRING [EVENTS]

The hub needs partition "0".
"""

import sys
import threading
import time

from azure.eventhub import EventData, EventHubConsumerClient, EventHubProducerClient


def main():
    conn = sys.argv[1]
    events = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
    body = b"x" * 1024
    with EventHubProducerClient.from_connection_string(conn) as producer:
        start_seq = producer.get_partition_properties("0")["last_enqueued_sequence_number"]
        started = time.perf_counter()
        sent = 0
        while sent < events:
            batch = producer.create_batch(partition_id="0")
            try:
                while sent < events:
                    batch.add(EventData(body))
                    sent += 1
            except ValueError:
                pass  # batch full
            producer.send_batch(batch)
        send_time = time.perf_counter() - started

    received = 0
    done = threading.Event()
    consumer = EventHubConsumerClient.from_connection_string(conn, consumer_group="$Default")

    def on_event_batch(_context, batch):
        nonlocal received
        for event in batch:
            assert len(event.body_as_str(encoding="latin-1")) == 1024
        received += len(batch)
        if received >= events:
            done.set()

    started = time.perf_counter()
    thread = threading.Thread(
        target=consumer.receive_batch,
        kwargs={"on_event_batch": on_event_batch, "partition_id": "0", "starting_position": start_seq,
                "max_batch_size": 300, "prefetch": 300},
        daemon=True,
    )
    thread.start()
    if not done.wait(120):
        raise SystemExit(f"only {received} of {events} events received")
    receive_time = time.perf_counter() - started
    consumer.close()
    total = send_time + receive_time
    print(f"python-sdk events={events} send={events / send_time:.0f}/s receive={events / receive_time:.0f}/s "
          f"send+receive={events / total:.0f}/s")


if __name__ == "__main__":
    main()
