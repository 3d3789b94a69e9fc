"""Helpers shared by the emulator tests: connection strings, starting a
binary, and bounded receiving with EventHubConsumerClient."""

import dataclasses
import re
import subprocess
import threading
import time

from azure.eventhub import EventHubConsumerClient


@dataclasses.dataclass
class Emulator:
    host: str
    port: int
    key_name: str
    key: str
    startup_seconds: float = 0.0

    def conn_str(self, hub, key=None):
        return (
            f"Endpoint=sb://{self.host}:{self.port}/;SharedAccessKeyName={self.key_name};"
            f"SharedAccessKey={key or self.key};UseDevelopmentEmulator=true;EntityPath={hub}"
        )


LISTEN_LINE = re.compile(r"listening on amqp://([0-9.]+):(\d+)")


def start_emulator(binary, args, key_name, key, timeout=10.0):
    """Starts the binary with --port 0 among args; returns (process, Emulator).

    The Emulator's `startup_seconds` is the time until it reported listening.
    """
    began = time.monotonic()
    proc = subprocess.Popen(
        [binary, *args, "--key", f"{key_name}={key}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + timeout
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        match = LISTEN_LINE.search(line)
        if match:
            emu = Emulator(match.group(1), int(match.group(2)), key_name, key)
            emu.startup_seconds = time.monotonic() - began
            return proc, emu
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"emulator did not start; last output: {line!r}")


def receive(conn_str, count, timeout=20.0, consumer_group="$Default", ready=None, **receive_kwargs):
    """Receives until `count` events arrived or `timeout` passed.

    `ready` (a threading.Event) is set once the receiver reported in (the
    first on_event call, with or without an event).
    """
    events = []
    errors = []
    done = threading.Event()
    consumer = EventHubConsumerClient.from_connection_string(conn_str, consumer_group=consumer_group)

    def on_event(context, event):
        if ready is not None:
            ready.set()
        if event is not None:
            events.append((context.partition_id, event))
            if len(events) >= count:
                done.set()

    def on_error(context, error):
        errors.append(error)

    kwargs = {"max_wait_time": 0.3, **receive_kwargs}
    thread = threading.Thread(
        target=consumer.receive,
        kwargs={"on_event": on_event, "on_error": on_error, **kwargs},
        daemon=True,
    )
    thread.start()
    done.wait(timeout)
    consumer.close()
    thread.join(10)
    return events, errors
