"""Per-cell round trip and output latency of mpkernel, next to the floor and Jupyter's own cost.

Run: `python bench/bench_roundtrip.py [--n 50] [--boards microbit,qemu]` (needs the emulated
boards: qemu-system-arm, the micro:bit firmware, and the modern board built by `.ci/bootstrap
--test`). Each board's figures come from one emulated board shared by all its measurements;
both boards are printed in one table.

Round trip of a trivial cell, `print(1)`, and of a cell ending in an expression
(`x = 6; x * 7`, shown as Out[n]), median and worst of N:
  floor    a minimal pyserial loop on the board's pty: `print(1)\\x04` in raw REPL mode, read
           to `\\x04>`. Nothing can run a cell on this board faster.
  board    the same through mpkernel's Board.exec in this process (board/board.py, rawrepl.py),
           once as typed and once as the kernel sends it (rewritten to show a trailing
           expression's value: more bytes for the board to receive).
  mpkernel execute_request -> execute_reply and idle status, through a real kernel process
           (jupyter_client KernelManager), talking to the same board.
  ipython  the same cell in the stock ipykernel (`python3`): what Jupyter's messaging costs.
Target: (mpkernel - floor) / ipython <= 1.2, i.e. mpkernel adds next to nothing to Jupyter.

Output latency (target <= 50 ms): how long after the board prints a line it arrives as a
stream message. The board prints `time.ticks_ms()` every 200 ms, so each line carries the
board's own timestamp b_i. QEMU's clock runs in host real time, so arrival_i - b_i is a
constant offset plus the delivery delay. The floor loop reads the raw bytes from the pty and
gives the offset: C = min(arrival_i - b_i) (the raw pty adds well under a millisecond). Through
the kernel, delay_i = (arrival_i - b_i) - C is the time from the board printing a line to the
client holding the stream message. The floor is measured before and after the kernel run;
their difference (clock drift, ms resolution of ticks_ms) bounds the method's error.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from queue import Empty

import serial
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager

from mpkernel import cells
from mpkernel.board.board import Board
from mpkernel.sim import ModernBoard, QemuBoard, simulator_for

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"
# A cell ending in an expression: the kernel rewrites it to show Out[n] (print(1) is the one
# cell that rewrite leaves alone, so it alone would hide the rewrite's cost).
EXPRESSION = "x = 6\nx * 7"
STREAM_CELL = "import time\nfor i in range({n}):\n print(time.ticks_ms())\n time.sleep_ms(200)"


# -- the floor: a bare raw-REPL loop --------------------------------------------------------
def read_until(port: serial.Serial, marker: bytes, timeout: float = 5.0) -> bytes:
    data = bytearray()
    deadline = time.monotonic() + timeout
    while not data.endswith(marker):
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited for {marker!r}, got {bytes(data[-80:])!r}")
        data += port.read(max(1, port.in_waiting))
    return bytes(data)


def open_raw(pty: str) -> serial.Serial:
    port = serial.Serial(pty, 115200, timeout=0.05)
    port.write(b"\r\x03\x03\x01")
    read_until(port, RAW_BANNER)
    return port


def floor_roundtrip(pty: str, n: int) -> list[float]:
    port = open_raw(pty)
    times = []
    try:
        for _ in range(n + 3):
            t0 = time.perf_counter()
            port.write(b"print(1)\x04")
            read_until(port, b"\x04>")
            times.append(time.perf_counter() - t0)
    finally:
        port.write(b"\x02")  # back to the friendly REPL, as a person would leave it
        port.close()
    return times[3:]  # the first exchanges warm up caches on both sides


def floor_stream(pty: str, lines: int) -> tuple[float, float]:
    """(C, when): offset C = min(host arrival - board ticks) over `lines` lines, in ms, and
    the host time (ms) it was measured at."""
    port = open_raw(pty)
    offsets = []
    try:
        port.write(STREAM_CELL.format(n=lines).encode() + b"\x04")
        # The first lines may arrive in the same read as the OK: keep what follows it.
        buf = b""
        deadline = time.monotonic() + 5
        while b"OK" not in buf:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no OK from the board, got {buf[-80:]!r}")
            buf += port.read(max(1, port.in_waiting))
        buf = buf.split(b"OK", 1)[1]
        while len(offsets) < lines:
            chunk = port.read(max(1, port.in_waiting))
            now = time.monotonic() * 1000
            buf += chunk
            while b"\r\n" in buf:
                line, buf = buf.split(b"\r\n", 1)
                if line.strip().isdigit():
                    offsets.append(now - int(line))
        if b"\x04>" not in buf:
            read_until(port, b"\x04>")
    finally:
        port.write(b"\x02")
        port.close()
    return min(offsets), time.monotonic() * 1000


def board_roundtrip(board: Board, code: str, n: int) -> list[float]:
    for _ in range(3):
        board.exec(code)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        board.exec(code)
        times.append(time.perf_counter() - t0)
    return times


# -- through a kernel -------------------------------------------------------------------------
def start_kernel(name: str, spec_root: Path | None, env: dict[str, str]) -> tuple:
    ksm = KernelSpecManager(kernel_dirs=[str(spec_root / "kernels")]) if spec_root else None
    km = KernelManager(kernel_name=name, **({"kernel_spec_manager": ksm} if ksm else {}))
    km.start_kernel(env={**os.environ, **env})
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    return km, kc


def run_cell(kc, code: str, timeout: float = 30) -> list[tuple[float, dict]]:
    """Execute and wait for both the reply and the idle status; IOPub messages with times."""
    msg_id = kc.execute(code)
    got_reply = False
    msgs: list[tuple[float, dict]] = []
    idle = False
    deadline = time.monotonic() + timeout
    while not (got_reply and idle):
        if time.monotonic() > deadline:
            raise TimeoutError(f"cell {code!r} did not finish")
        if not got_reply:
            try:
                reply = kc.get_shell_msg(timeout=0.001 if not idle else 1)
                got_reply = reply["parent_header"].get("msg_id") == msg_id
            except Empty:
                pass
        if not idle:
            try:
                msg = kc.get_iopub_msg(timeout=0.001 if not got_reply else 1)
            except Empty:
                continue
            if msg["parent_header"].get("msg_id") == msg_id:
                msgs.append((time.monotonic() * 1000, msg))
                idle = msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle"
    return msgs


def kernel_roundtrip(kc, n: int, code: str = "print(1)") -> list[float]:
    for _ in range(3):
        run_cell(kc, code)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        msgs = run_cell(kc, code)
        times.append(time.perf_counter() - t0)
    kinds = {m["msg_type"] for _, m in msgs}
    # A cell ending in an expression must really have shown Out[n]: time the real thing.
    if not code.startswith("print") and "execute_result" not in kinds:
        raise RuntimeError(f"{code!r} showed no execute_result (got {sorted(kinds)})")
    return times


def kernel_stream_delays(kc, lines: int) -> list[tuple[float, float]]:
    """(arrival, arrival - board ticks) in ms for each line streamed through the kernel."""
    delays = []
    text = ""
    for arrived, msg in run_cell(kc, STREAM_CELL.format(n=lines)):
        if msg["msg_type"] != "stream":
            continue
        # A line may arrive in pieces; it counts as delivered with the piece that ends it.
        text += msg["content"]["text"]
        *done, text = text.split("\n")
        delays += [(arrived, arrived - int(line)) for line in done if line.strip().isdigit()]
    return delays


def write_spec(root: Path, port: str) -> None:
    spec = root / "kernels" / "mpkernel-bench"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "mpkernel", "kernel", "-f", "{connection_file}"],
        "display_name": "mpkernel bench", "language": "python",
        "env": {"MPKERNEL_PORT": port},
    }))


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:7.2f} / {max(values) * 1000:7.2f}"


def fresh_board(name: str) -> QemuBoard:
    """A not yet started emulated board; the modern one on its own empty flash file, so the
    bench neither touches the user's files nor waits for another QEMU holding them."""
    return ModernBoard(fresh=True) if name == ModernBoard.name else simulator_for(name)


def measure(board_name: str, args: argparse.Namespace, root: Path) -> dict[str, object]:
    """Every figure for one emulated board; the floor and the kernel share its one pty."""
    got: dict[str, object] = {}
    with fresh_board(board_name) as sim:
        pty = sim.pty_path
        got["floor"] = floor_roundtrip(pty, args.n)
        offset_before = floor_stream(pty, args.lines)

        board = Board(pty)
        got["firmware"] = board.connect().splitlines()[0]
        got["direct"] = board_roundtrip(board, "print(1)", args.n)
        # What the kernel actually sends: the cell rewritten to show a trailing expression.
        expression = cells.show_trailing_expression(EXPRESSION)[0]
        got["expression_bytes"] = len(expression)
        got["direct_expr"] = board_roundtrip(board, expression, args.n)
        board.close()

        spec_root = root / board_name
        write_spec(spec_root, pty)
        env = {"IPYTHONDIR": str(root / "ipython")}
        km, kc = start_kernel("mpkernel-bench", spec_root, env)
        try:
            run_cell(kc, "x = 1", timeout=60)  # connects to the board
            got["mpk"] = kernel_roundtrip(kc, args.n)
            got["mpk_expr"] = kernel_roundtrip(kc, args.n, EXPRESSION)
            raw_delays = kernel_stream_delays(kc, args.lines)
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=False)
        offset_after = floor_stream(pty, args.lines)
    # The board's clock drifts slightly against the host's: take the offset at each line's
    # arrival by interpolating between the floor runs before and after the kernel's.
    (c0, t0), (c1, t1) = offset_before, offset_after
    got["delays"] = [d - (c0 + (c1 - c0) * (at - t0) / (t1 - t0)) for at, d in raw_delays]
    got["drift"] = c1 - c0
    return got


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50, help="cells per measurement")
    parser.add_argument("--lines", type=int, default=10, help="lines in the stream test")
    parser.add_argument("--boards", default="microbit,qemu",
                        help="emulated boards to measure, comma-separated (default both)")
    args = parser.parse_args()
    names = [name for name in args.boards.split(",") if name]

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        results = {name: measure(name, args, root) for name in names}
        km, kc = start_kernel("python3", None, {"IPYTHONDIR": str(root / "ipython")})
        try:
            ipy = kernel_roundtrip(kc, args.n)
            ipy_expr = kernel_roundtrip(kc, args.n, EXPRESSION)
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=False)

    print(f"Round trip, N={args.n}, milliseconds, median / worst")
    for name in names:
        print(f"  {name}: {results[name]['firmware']}")
    header = f"  {'':34}" + "".join(f"{name:>20}" for name in names) + f"{'ipykernel':>20}"
    print(header)
    rows = [
        ("print(1): floor (raw REPL, pyserial)", "floor", None),
        ("print(1): Board.exec in process", "direct", None),
        ("print(1): mpkernel kernel", "mpk", ipy),
        (f"{EXPRESSION!r}: Board.exec", "direct_expr", None),
        (f"{EXPRESSION!r}: mpkernel kernel", "mpk_expr", ipy_expr),
    ]
    for title, key, peer in rows:
        line = f"  {title:34}" + "".join(f"{ms(results[n][key]):>20}" for n in names)
        print(line + (f"{ms(peer):>20}" if peer else ""))
    print("\n(mpkernel - floor) / ipykernel, target <= 1.2:")
    met = True
    for name in names:
        m_floor = statistics.median(results[name]["floor"])
        for label, key, peer in (("print(1)", "mpk", ipy), ("expression", "mpk_expr", ipy_expr)):
            ratio = (statistics.median(results[name][key]) - m_floor) / statistics.median(peer)
            met = met and ratio <= 1.2
            print(f"  {name:10} {label:11} {ratio:5.2f}  {'met' if ratio <= 1.2 else 'NOT met'}")
    print("\nline printed on the board -> stream message at the client (target <= 50 ms):")
    for name in names:
        delays, drift = results[name]["delays"], results[name]["drift"]
        worst = max(delays) + abs(drift)
        met = met and worst <= 50
        print(f"  {name:10} {len(delays)} lines: median {statistics.median(delays):6.1f} ms, "
              f"worst {max(delays):6.1f} ms (board clock drift {drift:+.1f} ms, corrected "
              f"linearly; worst plus the whole drift {worst:.1f} ms: "
              f"{'met' if worst <= 50 else 'NOT met'})")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
