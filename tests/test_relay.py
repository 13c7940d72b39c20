"""The fault-injection relay itself, against the real firmware on the emulated micro:bit."""

from __future__ import annotations

import os
import threading
import time

import pytest
import serial
from harness.fixtures import (  # noqa: F401  (registered as sim, sim_fd, relay, rfc2217_relay)
    relay_fixture,
    rfc2217_relay_fixture,
    sim_fd_fixture,
    sim_fixture,
)
from harness.relay import (
    BAUD_115200,
    STALE_HALF_CELL,
    TO_BOARD,
    TO_HOST,
    FakeUsbIdentity,
    Relay,
    comports_with,
)

from mpkernel.sim import Simulator

# The relay works the same in front of either emulated board.
pytestmark = [pytest.mark.device, pytest.mark.boards("microbit", "qemu")]

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"


def boot_banner(relay: Relay) -> bytes:
    """How the board behind the relay starts its boot text ("MicroPython v1.9.2")."""
    return relay.board.banner.encode()


def open_port(url: str) -> serial.SerialBase:
    return serial.serial_for_url(url, timeout=0.2)


def read_until(port: serial.SerialBase, marker: bytes, timeout: float = 3.0) -> bytes:
    """Read until marker or timeout (then fail with what came), never sleeping blind."""
    deadline = time.monotonic() + timeout
    seen = b""
    while marker not in seen:
        if time.monotonic() > deadline:
            pytest.fail(f"no {marker!r} within {timeout} s; got {seen[-300:]!r}")
        seen += port.read(max(1, port.in_waiting))
    return seen


def exec_raw(port: serial.SerialBase, code: bytes, timeout: float = 3.0) -> bytes:
    """Run code in raw REPL mode and return its stdout (the test's own minimal client)."""
    port.write(b"\x03\x01")
    read_until(port, RAW_BANNER)
    port.write(code + b"\x04")
    answer = read_until(port, b"\x04>", timeout)
    out, err = answer.split(b"OK", 1)[1].split(b"\x04")[:2]
    assert err == b"", err
    return out


def test_bytes_pass_both_ways(relay: Relay) -> None:
    with open_port(relay.url) as port:
        port.write(b"\x03\x01")
        read_until(port, RAW_BANNER)
        assert exec_raw(port, b"print(6*7)") == b"42\r\n"
    assert relay.counters[TO_HOST] > len(RAW_BANNER) and relay.counters[TO_BOARD] >= 2


def test_throttle_holds_115200_baud_both_ways(relay: Relay) -> None:
    with open_port(relay.url) as port:
        exec_raw(port, b"pass")  # to raw mode before the clock starts
        relay.set_throttle(BAUD_115200)
        # Board to host: 6 KB of output, timed from its first to its last byte at the host.
        port.write(b"for i in range(60):\n print('x'*98)\x04")
        seen, first = b"", 0.0
        while seen.count(b"\x04") < 2:
            chunk = port.read(max(1, port.in_waiting))
            if chunk and not first:
                first = time.monotonic()
            seen += chunk
        down = (len(seen) - 1) / (time.monotonic() - first)
        # Host to board: a 3 KB comment, timed at the relay where it reaches the board.
        start = time.monotonic()
        port.write(b"#" + b"y" * 3000 + b"\x04")
        read_until(port, b"\x04>", timeout=5)
        sent = [(t, len(d)) for t, kind, d in relay.log if kind == TO_BOARD and t > start]
        up = sum(n for _, n in sent[1:]) / (sent[-1][0] - sent[0][0])
    assert 0.8 * BAUD_115200 < down < 1.1 * BAUD_115200, down
    assert 0.8 * BAUD_115200 < up < 1.1 * BAUD_115200, up


def test_latency_is_added_each_way(relay: Relay) -> None:
    with open_port(relay.url) as port:
        exec_raw(port, b"pass")
        relay.set_throttle(latency=0.05)
        start = time.monotonic()
        port.write(b"\x01")  # raw mode answers Ctrl-A with its banner: one round trip
        read_until(port, RAW_BANNER)
        round_trip = time.monotonic() - start
    assert 0.1 <= round_trip < 0.6, round_trip


def test_unplug_then_replug_under_a_new_name(relay: Relay) -> None:
    relay.identity = FakeUsbIdentity(serial_number="board-A")
    old = relay.url
    with open_port(old) as port:
        exec_raw(port, b"kept = 1234")
        relay.unplug()
        assert not os.path.exists(old) and comports_with([relay]) == []
        with pytest.raises(serial.SerialException):
            port.read(1)
        with pytest.raises(serial.SerialException):
            port.write(b"x")
    with pytest.raises(serial.SerialException):
        open_port(old)
    new = relay.replug("ttyACM1")
    assert new != old and new.endswith("ttyACM1")
    (info,) = comports_with([relay])
    assert (info.device, info.serial_number, info.vid) == (new, "board-A", 0x10C4)
    assert "SER=board-A" in info.hwid
    with open_port(new) as port:
        assert exec_raw(port, b"print(kept)") == b"1234\r\n"  # the same board, still running


def test_unplug_with_power_loss_reboots_the_board(relay: Relay) -> None:
    with open_port(relay.url) as port:
        exec_raw(port, b"kept = 1")
    relay.unplug(power_cycle=True)
    relay.replug()
    with open_port(relay.url) as port:
        assert b"NameError" in exec_raw_err(port, b"print(kept)")


def exec_raw_err(port: serial.SerialBase, code: bytes) -> bytes:
    port.write(b"\x03\x01")
    read_until(port, RAW_BANNER)
    port.write(code + b"\x04")
    return read_until(port, b"\x04>")


def test_rfc2217_rts_pulse_resets_the_board(rfc2217_relay: Relay) -> None:
    relay = rfc2217_relay
    with open_port(relay.url) as port:
        exec_raw(port, b"gone = 1")
        port.dtr = False  # the ESP32 sequence: RTS asserted with DTR released pulls EN low
        port.rts = True
        assert relay.counters["resets"] == 0  # held in reset, not rebooted yet
        port.rts = False
        seen = read_until(port, b">>> ")
        assert boot_banner(relay) in seen and relay.counters["resets"] == 1
        assert b"NameError" in exec_raw_err(port, b"print(gone)")
        relay.unplug()
        with pytest.raises(serial.SerialException):
            port.read(1)
            port.read(1)  # the first read may only see the EOF
    with pytest.raises(serial.SerialException):
        open_port(relay.url)
    relay.replug()
    with open_port(relay.url) as port:  # same TCP port; opening does not reset (DTR=RTS=1)
        assert exec_raw(port, b"print(1)") == b"1\r\n" and relay.counters["resets"] == 1


def test_closing_an_rfc2217_port_does_not_reset_the_board(rfc2217_relay: Relay) -> None:
    # Closing drops DTR and RTS together (EN stays high), as a real port's hang-up does; the
    # harness once released them one after the other, which is the reset pulse, and a test's
    # board rebooted whenever it closed a connection.
    relay = rfc2217_relay
    with open_port(relay.url) as port:
        exec_raw(port, b"kept = 7")
    with open_port(relay.url) as port:
        assert exec_raw(port, b"print(kept)") == b"7\r\n"
    assert relay.counters["resets"] == 0


def test_reset_after_bytes_fires_mid_upload(relay: Relay) -> None:
    with open_port(relay.url) as port:
        exec_raw(port, b"pass")
        relay.set_throttle(BAUD_115200)
        trigger = relay.reset_after_bytes(TO_BOARD, 1000)
        before = relay.counters[TO_BOARD]
        port.write(b"#" + b"z" * 2000 + b"\x04")
        assert trigger.fired.wait(2)
        seen = read_until(port, b">>> ")
        assert boot_banner(relay) in seen and b"OK" not in seen
        log = list(relay.log)
        delivered = sum(len(d) for t, kind, d in log if kind == TO_BOARD and t <= trigger.fired_at)
        assert delivered - before == 1000


def test_reset_when_fires_mid_output(relay: Relay) -> None:
    with open_port(relay.url) as port:
        exec_raw(port, b"pass")
        relay.set_throttle(BAUD_115200)
        trigger = relay.reset_when(lambda direction, seen: b"line 5\r\n" in seen, TO_HOST)
        port.write(b"for i in range(40):\n print('line', i)\x04")
        seen = read_until(port, b">>> ")
        assert trigger.fired.is_set()
        assert b"line 5\r\n" in seen and b"line 39" not in seen and boot_banner(relay) in seen


def test_injected_noise_and_stale_exchange_arrive(relay: Relay) -> None:
    with open_port(relay.url) as port:
        relay.inject_to_host(b"\xff\x00noise\x04")
        assert b"\xff\x00noise\x04" in read_until(port, b"noise\x04")
        relay.inject_to_board(STALE_HALF_CELL)  # a dead client's half-sent cell, in raw mode
        read_until(port, RAW_BANNER)
        assert exec_raw(port, b"print('clean')") == b"clean\r\n"  # Ctrl-C clears the half line


def test_stop_ends_every_thread(sim: Simulator, sim_fd: int) -> None:
    relay = Relay(sim, front="rfc2217", board_fd=sim_fd, rate=BAUD_115200, latency=0.016)
    with open_port(relay.url) as port:
        port.dtr, port.rts = False, True  # EN low: the board is held in reset (VM paused)
        assert "paused" in sim.monitor("info status")
        relay.replug_after(30)  # a pending timer must not outlive stop() either
        relay.stop()
    alive = [t.name for t in threading.enumerate() if t.name.startswith("relay-")]
    assert alive == [], alive
    assert "running" in sim.monitor("info status")  # the shared VM is never left paused
