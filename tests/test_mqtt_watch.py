"""%mqtt watch with %mqtt pub and sub in the same notebook, against a real mosquitto on
127.0.0.1 (started here) and, for a broker far away, through a proxy on loopback that delays
every byte. The kernel's board is never used (no board cell runs)."""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from host_kernel import Cell, Notebook, notebook

from mpkernel.host.mqtt import broker as brokers

DELAY = 0.25  # s each way through the proxy: a broker across the internet


class DelayProxy:
    """Forwards one port to another on loopback, each chunk `delay` seconds late, in order."""

    def __init__(self, target: int, delay: float) -> None:
        self.target, self.delay = target, delay
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                late: queue.Queue[tuple[float, bytes]] = queue.Queue()
                threading.Thread(target=self._read, args=(a, late), daemon=True).start()
                threading.Thread(target=self._write, args=(b, late), daemon=True).start()

    def _read(self, sock: socket.socket, late: queue.Queue[tuple[float, bytes]]) -> None:
        while True:
            try:
                data = sock.recv(4096)
            except OSError:
                data = b""
            late.put((time.monotonic() + self.delay, data))
            if not data:
                return

    def _write(self, sock: socket.socket, late: queue.Queue[tuple[float, bytes]]) -> None:
        while True:
            due, data = late.get()
            time.sleep(max(0.0, due - time.monotonic()))
            try:
                if not data:
                    sock.shutdown(socket.SHUT_WR)
                    return
                sock.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self.server.close()
        for s in self.open:
            s.close()


@pytest.fixture(scope="module")
def nb(local_broker: brokers.Broker, tmp_path_factory: pytest.TempPathFactory
       ) -> Iterator[Notebook]:
    with notebook(tmp_path_factory.mktemp("watch"), connect=False,
                  extra_env={"MPK_TEST_PW": local_broker.password}) as running:
        yield running


def connect(nb: Notebook, broker: brokers.Broker, port: int | None = None) -> None:
    cell = nb.run(f"%mqtt connect 127.0.0.1:{port or broker.port} --user {broker.user} "
                  "--password-env MPK_TEST_PW")
    assert cell.ok, (cell.error, cell.stdout)


def updates(cell: Cell) -> list[str]:
    return [m["content"]["data"]["text/plain"] for m in cell.of_type("update_display_data")]


def test_a_sub_on_the_watched_filter_leaves_the_watch_subscribed(
        nb: Notebook, local_broker: brokers.Broker) -> None:
    connect(nb, local_broker)
    assert nb.run("%mqtt pub class/last kept --retain").ok
    assert nb.run("%mqtt watch class/#").ok
    # The retained message the broker sends on subscribing is shown, marked as retained.
    first = nb.run("%mqtt pub class/first hello")
    rows = [line.split(" ", 1)[1] for line in updates(first)[-1].splitlines()[1:]]
    assert rows == ["class/first: hello", "class/last: kept (retained)"], rows
    sub = nb.run("%mqtt sub class/# --count 1", timeout=30)
    assert sub.stdout.splitlines()[1] == "class/last: kept", (sub.error, sub.stdout)
    # The sub ended; the watch (the same filter, so the same subscription) still hears.
    pub = nb.run("%mqtt pub class/after 'still here'")
    assert pub.ok, pub.error
    last = updates(pub)[-1].splitlines()
    assert last[1].split(" ", 1)[1] == "class/after: still here", last
    assert nb.run("%mqtt stop").stdout.startswith("Stopped 1 watch, the connection to ")


def test_pub_shows_its_message_in_the_watch_before_the_cell_ends_with_a_slow_broker(
        nb: Notebook, local_broker: brokers.Broker) -> None:
    proxy = DelayProxy(local_broker.port, DELAY)
    try:
        connect(nb, local_broker, proxy.port)
        assert nb.run("%mqtt watch far/#", timeout=30).ok
        started = time.monotonic()
        pub = nb.run("%mqtt pub far/x hello", timeout=30)
        took = time.monotonic() - started
        # The message went out and back (2 x DELAY at least) while the pub cell ran: its
        # update is among this cell's messages, where a headless run records it.
        texts = updates(pub)
        assert texts and texts[-1].splitlines()[1].split(" ", 1)[1] == "far/x: hello", (
            pub.messages)
        assert 2 * DELAY <= took < 2 * DELAY + 1.5, took
        assert nb.run("%mqtt stop").ok
    finally:
        proxy.close()


def test_pub_without_a_matching_watch_does_not_wait(nb: Notebook,
                                                   local_broker: brokers.Broker) -> None:
    connect(nb, local_broker)
    assert nb.run("%mqtt watch other/#").ok
    started = time.monotonic()
    pub: Any = nb.run("%mqtt pub far/y quick")
    assert pub.ok and not updates(pub)
    assert time.monotonic() - started < 0.5
    assert nb.run("%mqtt stop").ok


def test_a_broker_that_dies_mid_session_is_named_and_the_kernel_goes_on(
        nb: Notebook, local_broker: brokers.Broker) -> None:
    other = brokers.start_broker(0, "127.0.0.1", local_broker.user, local_broker.password)
    try:
        connect(nb, local_broker, other.port)
        assert nb.run("%mqtt watch gone/#").ok
        threading.Timer(1.0, other.proc.kill).start()  # like a crash
        started = time.monotonic()
        sub = nb.run("%mqtt sub gone/x", timeout=30)  # would listen until interrupted
        gone = f"Not connected: the broker at 127.0.0.1:{other.port} closed the connection"
        assert sub.error is not None and sub.error["evalue"].startswith(gone), sub.messages
        assert time.monotonic() - started < 5
        # The watch no longer claims to be watching.
        assert updates(sub)[-1].startswith(
            f"MQTT gone/# (stopped: the broker at 127.0.0.1:{other.port} closed the "
            "connection ("), updates(sub)
        assert updates(sub)[-1].endswith("; 0 messages, newest first; %mqtt connect again, "
                                         "then %mqtt watch)")
        pub = nb.run("%mqtt pub gone/x y")
        assert pub.error is not None and pub.error["evalue"].startswith(gone), pub.messages
    finally:
        other.stop()
    connect(nb, local_broker)  # the next connect works
    assert nb.run("%mqtt stop").ok


def test_invalid_topics_from_the_notebook_are_refused_and_the_connection_stays(
        nb: Notebook, local_broker: brokers.Broker) -> None:
    connect(nb, local_broker)
    for cell, says in [
        ("%mqtt pub lesson/+ x", "The topic 'lesson/+' contains a wildcard ('+' or '#')"),
        ("%mqtt sub lesson/#/x --count 1", "The filter 'lesson/#/x' uses a wildcard inside a "
                                           "level"),
        ("%mqtt watch lesson/a+", "The filter 'lesson/a+' uses a wildcard inside a level"),
    ]:
        refused = nb.run(cell, timeout=15)
        assert refused.error is not None and refused.error["evalue"].startswith(says), (
            cell, refused.messages)
    pub = nb.run("%mqtt pub lesson/ok fine")
    assert pub.stdout == "Published 4 bytes to lesson/ok (QoS 0).\n", pub.messages
    assert nb.run("%mqtt stop").stdout.startswith("Stopped the connection to ")
