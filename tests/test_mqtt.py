"""%mqtt on the emulated boards against a real mosquitto on 127.0.0.1 (started by %mqtt broker
in the kernel, on a free port, with its own config; it dies with the kernel): the bridge both
ways, %mqtt sub and watch, broker down, refused credentials, an invalid topic, an interrupted
board loop."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from host_kernel import PORTS, Notebook, board_name_fixture, notebook  # noqa: F401

from mpkernel.host.mqtt import broker as brokers
from mpkernel.host.mqtt.client import Connection

WRONG = "not-the-password"


@pytest.fixture(scope="module")
def nb(sim: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Notebook]:
    # `sim` names the board as the other device tests do, so MPK_BOARDS selects these too.
    with notebook(port=PORTS[sim], tmp_path=tmp_path_factory.mktemp("mqtt"),
                  extra_env={"MPK_TEST_WRONG_PW": WRONG}) as running:
        yield running


@pytest.fixture(scope="module")
def broker(nb: Notebook) -> dict[str, Any]:
    """%mqtt broker on loopback, %mqtt bridge, and the credentials the board received."""
    cell = nb.run("%mqtt broker --port 0 --bind 127.0.0.1", timeout=60)
    assert cell.ok, cell.error
    assert "; user and password in secrets.py on the board; the notebook is connected." in (
        cell.stdout), cell.stdout
    found = nb.run("import secrets\nprint(secrets.MQTT_BROKER, secrets.MQTT_PORT, "
                   "secrets.MQTT_USER, secrets.MQTT_PASSWORD)")
    assert found.ok, found.error
    host, port, user, password = found.stdout.split()
    # The summary names the address and port the board was given; the password is never shown.
    assert re.search(rf"on 127\.0\.0\.1 port {port};", cell.stdout), cell.stdout
    assert "refuses remote and anonymous clients by default" in cell.stdout
    assert password not in cell.stdout and len(password) >= 12
    bridged = nb.run("%mqtt bridge", timeout=60)
    assert bridged.ok, bridged.error
    return {"host": host, "port": int(port), "user": user, "password": password}


@pytest.fixture(autouse=True)
def fresh_heap(request: pytest.FixtureRequest) -> None:
    """Each test starts on a soft-reset board: the micro:bit's 16 KB hold the bridge and one
    test's cells, not a whole module's worth of interned names (its users do the same when a
    long session ends in MemoryError)."""
    if "nb" in request.fixturenames:
        nb = request.getfixturevalue("nb")
        request.getfixturevalue("broker")
        assert nb.run("%reset --soft").ok


def listener(broker: dict[str, Any], topic: str) -> Connection:
    """A subscriber in the test process: what really reached the broker."""
    conn = Connection("127.0.0.1", broker["port"], user=broker["user"],
                      password=broker["password"])
    conn.start()
    conn.wait_ready()
    conn.wait_suback(conn.subscribe(topic, 1), topic)
    return conn


CONNECT = ("from umqtt.simple import MQTTClient\nimport secrets\n"
           "c = MQTTClient('board1', secrets.MQTT_BROKER, secrets.MQTT_PORT, "
           "user=secrets.MQTT_USER, password=secrets.MQTT_PASSWORD)\nprint('session', "
           "c.connect())\n")


@pytest.mark.device
def test_board_publishes_through_the_bridge_and_gets_a_notebook_message(
        nb: Notebook, broker: dict[str, Any]) -> None:
    seen = listener(broker, "lesson/#")
    try:
        cell = nb.run(CONNECT + "c.subscribe('lesson/cmd')\nfor i in range(5):\n"
                      " c.publish('lesson/temp', str(20 + i))\n"
                      "c.publish(b'lesson/last', b'bye', retain=True)\nprint('sent')")
        assert cell.ok, (cell.error, cell.stdout)
        # The frames were taken out of the cell's output: only the board's own prints remain.
        assert cell.stdout == "session 0\nsent\n"
        deadline = time.monotonic() + 5
        while len(seen.messages) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        got = [(m.topic, m.payload) for m in seen.messages]
        assert got == [("lesson/temp", b"%d" % (20 + i)) for i in range(5)] + [
            ("lesson/last", b"bye")]
    finally:
        seen.close()
    # %mqtt sub sees what the board cell published (kept by the broker: retained).
    sub = nb.run("%mqtt sub lesson/last --count 1", timeout=30)
    assert sub.ok, (sub.error, sub.stdout)
    lines = sub.stdout.splitlines()
    assert lines[1] == "lesson/last: bye", lines
    assert lines[2].startswith("Stopped (--count 1): 1 message on lesson/last in ")
    # Without --for or --count it listens until interrupted; the kernel stays usable.
    endless = nb.run("%mqtt sub lesson/quiet", interrupt_after=1.0, timeout=20)
    assert endless.ok, endless.error
    assert re.fullmatch(r"Listening to lesson/quiet \(interrupt to stop\)\.\.\.\n"
                        r"Stopped \(interrupted\): 0 messages on lesson/quiet in \d+\.\d s\.\n",
                        endless.stdout), endless.stdout
    # A message sent with %mqtt pub reaches the board's callback.
    pub = nb.run("%mqtt pub lesson/cmd 'led on' --qos 1")
    assert pub.stdout == "Published 6 bytes to lesson/cmd (QoS 1).\n", (pub.error, pub.stdout)
    got = nb.run("def cb(topic, msg):\n print('got', topic, msg)\nc.set_callback(cb)\n"
                 "c.wait_msg()\nprint(c.check_msg())", timeout=30)
    assert got.stdout == "got b'lesson/cmd' b'led on'\nNone\n", (got.error, got.stdout)


@pytest.mark.device
def test_a_plotted_cell_publishes_through_the_bridge(nb: Notebook, broker: dict[str, Any]
                                                     ) -> None:
    seen = listener(broker, "lesson/plot")
    try:
        cell = nb.run("%%plot\n" + CONNECT + "for i in range(3):\n print(i * 10)\n"
                      " c.publish('lesson/plot', str(i * 10))", timeout=60)
        assert cell.ok, cell.error
        # The numbers are plotted (3 rows), and no frame is shown as text.
        assert cell.stdout == "session 0\nplot_data: 3 rows, 1 series (y1), for %%host cells.\n"
        deadline = time.monotonic() + 5
        while len(seen.messages) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [m.payload for m in seen.messages] == [b"0", b"10", b"20"]
    finally:
        seen.close()


@pytest.mark.device
def test_watch_updates_arrive_while_a_board_cell_runs(nb: Notebook,
                                                      broker: dict[str, Any]) -> None:
    assert nb.run(CONNECT).ok
    watch_id = nb.kc.execute("%mqtt watch lesson/live/#")
    board_id = nb.kc.execute("import time\nfor i in range(4):\n"
                             " c.publish('lesson/live/n', str(i))\n time.sleep_ms(300)\n"
                             "print('done')")
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            msg = nb.kc.get_iopub_msg(timeout=0.2)
        except Exception:
            continue
        messages.append(msg)
        if (msg["parent_header"].get("msg_id") == board_id and msg["msg_type"] == "status"
                and msg["content"]["execution_state"] == "idle"):
            break
    else:
        raise AssertionError(f"the board cell did not finish: {messages}")
    for _ in range(2):
        nb.kc.get_shell_msg(timeout=10)
    shown = [m for m in messages if m["msg_type"] == "display_data"
             and m["parent_header"].get("msg_id") == watch_id]
    assert len(shown) == 1, messages
    display_id = shown[0]["content"]["transient"]["display_id"]
    busy = next(i for i, m in enumerate(messages) if m["parent_header"].get("msg_id") == board_id
                and m["msg_type"] == "status" and m["content"]["execution_state"] == "busy")
    updates = [(i, m) for i, m in enumerate(messages) if m["msg_type"] == "update_display_data"]
    # Every update belongs to the watch cell's display and arrived while the board cell ran,
    # under the board cell's request: the one a headless run (nbclient) is reading.
    assert len(updates) == 4, messages
    for i, m in updates:
        assert m["content"]["transient"]["display_id"] == display_id
        assert m["parent_header"]["msg_id"] == board_id
        assert busy < i < len(messages) - 1
    last = updates[-1][1]["content"]["data"]["text/plain"].splitlines()
    assert last[0].startswith("MQTT lesson/live/# (watching; 4 messages")
    assert [line.split(" ", 1)[1] for line in last[1:]] == [
        f"lesson/live/n: {i}" for i in (3, 2, 1, 0)]
    stop = nb.run("%mqtt stop --broker")
    assert stop.stdout == (f"Stopped 1 watch, the connection to 127.0.0.1:{broker['port']}, 1 "
                           f"bridged board connection(s), the broker on port {broker['port']}.\n")
    # Started again, the broker keeps the credentials the board imported from secrets.py.
    assert nb.run(f"%mqtt broker --port {broker['port']} --bind 127.0.0.1").ok
    assert nb.run(CONNECT).stdout == "session 0\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.device
def test_broker_down_refused_credentials_and_bad_topic_end_cleanly(
        nb: Notebook, broker: dict[str, Any]) -> None:
    down = _free_port()
    cell = nb.run(f"from umqtt.simple import MQTTClient\nd = MQTTClient('x', '127.0.0.1', {down})"
                  "\nd.connect()")
    assert cell.error["ename"] == "OSError", (cell.error, cell.stdout)
    assert cell.error["evalue"] == (f"MQTT: Nothing accepts connections on 127.0.0.1:{down}: "
                                    "no MQTT broker runs there. Start one (%mqtt broker), or "
                                    "check the host and port.")
    refused = nb.run("import secrets\nr = MQTTClient('y', '127.0.0.1', secrets.MQTT_PORT, "
                     f"user=secrets.MQTT_USER, password={WRONG!r})\nr.connect()")
    # umqtt raises MQTTException with the CONNACK code: 5 is "not authorized".
    assert (refused.error["ename"], refused.error["evalue"]) == ("MQTTException", "5")
    bad = nb.run(CONNECT + "c.publish('lesson/+', 'x')")
    assert bad.error["ename"] == "OSError"
    assert bad.error["evalue"].startswith("MQTT: The topic 'lesson/+' contains a wildcard")
    bad_filter = nb.run("c.subscribe('lesson/#/x')")
    assert bad_filter.error["ename"] == "OSError", (bad_filter.error, bad_filter.stdout)
    assert bad_filter.error["evalue"].startswith(
        "MQTT: The filter 'lesson/#/x' uses a wildcard inside a level")
    # The refused topics did not cost the client its connection.
    assert nb.run("c.publish('lesson/fine', 'ok')\nprint('ok')").stdout == "ok\n"
    assert nb.run("print(1 + 1)").stdout == "2\n"  # the board still answers
    # The notebook's own client says the same things.
    nb_down = nb.run(f"%mqtt connect 127.0.0.1:{down}")
    assert nb_down.error["evalue"].startswith(f"Nothing accepts connections on 127.0.0.1:{down}")
    nb_refused = nb.run(f"%mqtt connect 127.0.0.1:{broker['port']} --user {broker['user']} "
                        "--password-env MPK_TEST_WRONG_PW")
    text = nb_refused.error["evalue"]
    assert text.startswith(f"The broker at 127.0.0.1:{broker['port']} refused the connection: "
                           "Not authorized (MQTT return code 5).")
    assert WRONG not in "".join(str(m["content"]) for m in nb_refused.messages)
    unset = nb.run("%mqtt connect 127.0.0.1 --user u --password-env MPK_TEST_NOT_SET")
    assert unset.error["evalue"].startswith("The environment variable MPK_TEST_NOT_SET is not set")


@pytest.mark.device
def test_a_broker_that_dies_under_a_waiting_board_loop_ends_it_with_the_cause(
        nb: Notebook) -> None:
    # A broker of its own (the module's stays up for the other tests), killed like a crash.
    other = brokers.start_broker(port=0, bind="127.0.0.1")
    try:
        up = nb.run("from umqtt.simple import MQTTClient\n"
                    f"d = MQTTClient('doomed', '127.0.0.1', {other.port}, user={other.user!r}, "
                    f"password={other.password!r})\nprint(d.connect())\nd.subscribe('x/y')")
        assert up.stdout == "0\n", (up.error, up.stdout)
        threading.Timer(1.5, other.proc.kill).start()
        started = time.monotonic()
        waiting = nb.run("d.wait_msg()", timeout=30)
        gone = f"MQTT: Not connected: the broker at 127.0.0.1:{other.port} closed the connection"
        assert waiting.error["ename"] == "OSError", (waiting.error, waiting.stdout)
        assert waiting.error["evalue"].startswith(gone), waiting.error
        assert waiting.error["evalue"].endswith(". Connect again."), waiting.error
        assert time.monotonic() - started < 6
        again = nb.run("d.publish('x/y', 'z')")
        assert again.error["evalue"].startswith(gone), again.error
        assert nb.run("print(1 + 1)").stdout == "2\n"  # the board still answers
    finally:
        other.stop()


@pytest.mark.device
def test_interrupted_board_loop_closes_the_client_and_connect_works_again(
        nb: Notebook, broker: dict[str, Any]) -> None:
    assert nb.run(CONNECT + "c.subscribe('lesson/never')").ok
    stuck = nb.run("while True:\n c.wait_msg()", interrupt_after=1.5, timeout=30)
    assert stuck.error["ename"] == "KeyboardInterrupt", (stuck.error, stuck.stdout)
    # The interrupted client's connection is gone: publishing says so instead of hanging.
    gone = nb.run("c.publish('lesson/x', 'y')")
    assert gone.error["evalue"] == "MQTT: Not connected: call connect() first."
    seen = listener(broker, "lesson/again")
    try:
        again = nb.run("print(c.connect())\nc.publish('lesson/again', 'back')")
        assert again.ok and again.stdout == "0\n", (again.error, again.stdout)
        deadline = time.monotonic() + 5
        while not seen.messages and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [(m.topic, m.payload) for m in seen.messages] == [("lesson/again", b"back")]
    finally:
        seen.close()


@pytest.mark.device
def test_bridge_keeps_a_real_umqtt_unless_forced(nb: Notebook, broker: dict[str, Any]) -> None:
    path = nb.run("import os\nprint('umqtt.py' if 'umqtt.py' in os.listdir() else "
                  "'umqtt/simple.py')").stdout.strip()
    real = "# the real umqtt.simple\nclass MQTTClient:\n pass\n"
    assert nb.run(f"f = open({path!r}, 'w')\nf.write({real!r})\nf.close()").ok
    kept = nb.run("%mqtt bridge", timeout=60)
    assert kept.error["evalue"].startswith(f"{path} on the board is not mpkernel's bridge")
    assert nb.run(f"print(open({path!r}).read() == {real!r})").stdout == "True\n"
    forced = nb.run("%mqtt bridge --force", timeout=60)
    assert forced.ok, forced.error
    assert nb.run(CONNECT).stdout == "session 0\n"


def test_frames_split_across_reads_and_lookalikes_in_user_text(tmp_path: Path) -> None:
    from mpkernel.host.mqtt import bridge

    class FakeLink:
        def __init__(self) -> None:
            self.sent = b""

        def write(self, data: bytes) -> None:
            self.sent += data

    class FakeBoard:
        link = FakeLink()
        interrupt_requested = False

    board = FakeBoard()
    cell = bridge.Relay().for_cell(board)  # type: ignore[arg-type]
    request = bridge.frame(repr(("M", 7, 0))).decode()
    # Not connected: the answer is an error frame, sent in pieces of at most 48 bytes.
    shown = cell.feed("before " + request[:5]) + cell.feed(request[5:] + " after\n")
    assert shown == "before  after\n"
    answer = b"\x1deMQTT: Not connected: call connect() first.#%x\x1e" % sum(
        b"eMQTT: Not connected: call connect() first.")
    assert board.link.sent == answer[:48]
    assert cell.feed("\x1d+\x1e") == ""
    assert board.link.sent == answer[:96]
    assert cell.feed("\x1d!\x1e") == ""  # the board lost bytes: the answer starts again
    assert board.link.sent == answer[:96] + answer[:48]
    # User text that looks like a frame but fails its sum is shown as printed.
    fake = "\x1d('M', 7, 0)#ffff\x1e"
    assert cell.feed(fake + "ok") == fake + "ok"
    # A lone 0x1D in user text is shown at once when a line follows, else when the cell ends.
    assert cell.feed("a\x1db\nc") == "a\x1db\nc"
    assert cell.feed("d\x1de") == "d"
    assert cell.close() == "\x1de"
    # A message goes to the board as hex: no byte of it can be a Ctrl-C or a frame byte.
    assert bridge.encode_reply(("k", (b"t/1", b"\x03\x1e"))) == "m742f31,031e"
    # An error's text keeps '#' (a filter such as sensors/#); control bytes become '?'.
    assert bridge.encode_reply(("e", "a/#/b\x03")) == "ea/#/b?"


@pytest.mark.device
def test_after_a_kernel_restart_the_bridge_on_the_board_is_answered(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    # The modern board keeps its files across kernel restarts (its flash is a host file); the
    # micro:bit's emulator starts empty each time, so there is nothing to answer there.
    with notebook(port="sim:qemu", tmp_path=tmp_path_factory.mktemp("restart")) as nb:
        assert nb.run("%mqtt broker --port 0 --bind 127.0.0.1", timeout=60).ok
        assert nb.run("%mqtt bridge", timeout=60).ok
        nb.km.restart_kernel(now=True)
        nb.kc.wait_for_ready(timeout=60)
        assert nb.run("print('back')", timeout=60).stdout.endswith("back\n")
        assert nb.run("%mqtt broker --port 0 --bind 127.0.0.1", timeout=60).ok
        # No %mqtt bridge in this kernel: the board's module is answered all the same.
        again = nb.run(CONNECT, timeout=30)
        assert again.stdout == "session 0\n", (again.error, again.stdout)
