"""MQTT through the bridge: a board loop publishing 20 messages a second for 10 s.

Run: `python bench/bench_mqtt.py [--boards microbit,qemu] [--rate 20] [--seconds 10]` (needs
the emulated boards and Debian's mosquitto). For each board: a mosquitto of its own on
127.0.0.1 (free port, generated user), `%mqtt bridge` on the board, then one cell:

    for i in range(N):            # paced by the board's clock: one message every 1/rate s
        print('p', i)             # the mark the host times
        c.publish('bench/seq', str(i))

Method. The cell runs through Board.exec with the kernel's cell output filter chain (the
same path a notebook cell takes), in this process. The host stamps each `p i` line when its
bytes arrive from the board (time.monotonic, in the filter chain, before the bridge frame
that follows it is read), and a separate paho subscriber on the same broker stamps message i
when it arrives (paho's thread, the moment `%mqtt watch` would send its display update).
Latency i = subscriber arrival - print arrival: the board's print seen on the host to the
message delivered by the broker, i.e. the bridge's frame, the relay, paho and mosquitto. The
board also measures how long each publish() call blocks it (ticks_ms around the call).
Delivered means: every i arrived exactly once, in order.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mpkernel import output_filters  # noqa: E402
from mpkernel.board.board import Board  # noqa: E402
from mpkernel.host.mqtt.broker import start_broker  # noqa: E402
from mpkernel.host.mqtt.client import Connection  # noqa: E402
from mpkernel.magics import MagicContext, registry  # noqa: E402

PORTS = {"microbit": "sim", "qemu": "sim:qemu"}

CELL = """from umqtt.simple import MQTTClient
import time
c = MQTTClient('bench', {host!r}, {port}, user={user!r}, password={password!r})
c.connect()
t0 = time.ticks_ms()
worst = 0
total = 0
for i in range({n}):
    while time.ticks_diff(time.ticks_ms(), t0) < i * {period}:
        pass
    print('p', i)
    a = time.ticks_ms()
    c.publish('bench/seq', str(i))
    d = time.ticks_diff(time.ticks_ms(), a)
    total += d
    worst = max(worst, d)
print('publish_ms', total // {n}, worst)
c.disconnect()
"""


def run_board(name: str, rate: int, seconds: float) -> dict[str, float]:
    n = int(rate * seconds)
    broker = start_broker(port=0, bind="127.0.0.1")
    board = Board(PORTS[name])
    try:
        board.connect()
        ctx = MagicContext(get_board=lambda: board, write=lambda text: None,
                           make_progress=None)  # type: ignore[arg-type]
        mqtt = registry()["%mqtt"]
        mqtt.handler(ctx, mqtt.parse("bridge"))

        arrived: list[tuple[int, float]] = []
        lock = threading.Lock()
        sub = Connection("127.0.0.1", broker.port, user=broker.user, password=broker.password)
        sub.start()
        sub.wait_ready()

        def on_message(m: object) -> None:
            with lock:
                arrived.append((int(m.payload), time.monotonic()))  # type: ignore[attr-defined]

        sub.listeners.append(on_message)
        sub.wait_suback(sub.subscribe("bench/seq"), "bench/seq")

        printed: dict[int, float] = {}
        tail: list[str] = []
        buffer = ""

        def on_output(text: str) -> None:
            nonlocal buffer
            now = time.monotonic()
            buffer += text
            while "\n" in buffer:
                line, buffer = buffer.split("\n", 1)
                words = line.strip().split()
                if len(words) == 2 and words[0] == "p":
                    printed[int(words[1])] = now
                else:
                    tail.append(line.strip())

        # The relay is registered for every board cell (output_filters.DEFAULTS) by %mqtt.
        active = output_filters.ActiveFilters({}, board)
        out, idle = active.wrap(on_output, lambda: None)
        code = CELL.format(host="127.0.0.1", port=broker.port, user=broker.user,
                           password=broker.password, n=n, period=1000 // rate)
        started = time.monotonic()
        try:
            board.exec(code, on_output=out, on_idle=idle, timeout=seconds * 4 + 30)
        finally:
            active.close()
        took = time.monotonic() - started
        deadline = time.monotonic() + 5
        while len(arrived) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        sub.close()
        order = [i for i, _ in arrived]
        latencies = [(t - printed[i]) * 1000 for i, t in arrived if i in printed]
        pub = next((line.split()[1:] for line in tail if line.startswith("publish_ms")), ["?", "?"])
        return {
            "sent": n, "delivered": len(arrived), "in_order": order == list(range(n)),
            "cell_s": took, "median_ms": statistics.median(latencies),
            "p95_ms": sorted(latencies)[int(len(latencies) * 0.95) - 1],
            "worst_ms": max(latencies), "publish_avg_ms": pub[0], "publish_worst_ms": pub[1],
        }
    finally:
        board.close()
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", default="microbit,qemu")
    parser.add_argument("--rate", type=int, default=20, help="messages per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    print(f"MQTT bridge: {args.rate} msg/s for {args.seconds:g} s per board; latency = board "
          "print seen on the host -> message at a subscriber (see the module docstring)")
    print(f"{'board':9} {'sent':>5} {'deliv':>5} {'order':>5} {'cell s':>7} {'median':>7} "
          f"{'p95':>7} {'worst':>7} {'publish() avg/worst on the board':>34}")
    for name in args.boards.split(","):
        r = run_board(name, args.rate, args.seconds)
        print(f"{name:9} {r['sent']:>5} {r['delivered']:>5} {str(r['in_order']):>5} "
              f"{r['cell_s']:>7.1f} {r['median_ms']:>5.1f}ms {r['p95_ms']:>5.1f}ms "
              f"{r['worst_ms']:>5.1f}ms {r['publish_avg_ms']:>20} / {r['publish_worst_ms']} ms")


if __name__ == "__main__":
    main()
