"""The `mpkernel` command: install | kernel | sim | ports | doctor | run | flash."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

KERNEL_NAME = "mpkernel"
SPEC_SOURCE = Path(__file__).resolve().parent.parent / "kernelspec"


def spec_dir_with_argv(target: Path) -> Path:
    """Write the kernelspec (logos and a kernel.json naming this interpreter) into target."""
    target.mkdir(parents=True, exist_ok=True)
    source = _spec_source()
    for item in source.iterdir():
        if item.is_file() and item.name != "kernel.json":
            shutil.copy(item, target / item.name)
    spec = json.loads((source / "kernel.json").read_text())
    spec["argv"] = [sys.executable, "-m", "mpkernel", "kernel", "-f", "{connection_file}"]
    (target / "kernel.json").write_text(json.dumps(spec, indent=1) + "\n")
    return target


def _spec_source() -> Path:
    if (SPEC_SOURCE / "kernel.json").exists():
        return SPEC_SOURCE
    # Installed from a wheel: the spec lives in the environment's share/jupyter/kernels.
    installed = Path(sys.prefix) / "share" / "jupyter" / "kernels" / KERNEL_NAME
    if (installed / "kernel.json").exists():
        return installed
    raise SystemExit("mpkernel: the kernelspec files are missing from this installation.")


def cmd_install(args: argparse.Namespace) -> int:
    from jupyter_client.kernelspec import KernelSpecManager

    with tempfile.TemporaryDirectory() as tmp:
        spec = spec_dir_with_argv(Path(tmp) / KERNEL_NAME)
        prefix = args.prefix or (sys.prefix if args.sys_prefix else None)
        dest = KernelSpecManager().install_kernel_spec(
            str(spec), KERNEL_NAME, user=args.user, prefix=prefix
        )
    print(f"Installed the MicroPython kernelspec in {dest}")
    return 0


def cmd_kernel(rest: list[str]) -> int:
    from ipykernel.kernelapp import IPKernelApp

    from mpkernel.kernel import MicroPythonKernel

    IPKernelApp.launch_instance(argv=rest, kernel_class=MicroPythonKernel)
    return 0


def cmd_sim(args: argparse.Namespace) -> int:
    from mpkernel.errors import MpkernelError
    from mpkernel.sim import BOARDS, DEFAULT_BOARD, simulator_for

    if args.build:
        from mpkernel.sim.build import main as build_main

        return build_main(["--force"] if args.force else [])
    if args.reset:
        return cmd_sim_reset(args.reset)
    if args.list:
        for key, cls in BOARDS.items():
            default = "  (default)" if key == DEFAULT_BOARD else ""
            print(f"{key:10} {cls.label}{default}   %connect sim:{key}")
        return 0
    try:
        sim = simulator_for(args.name).start()
    except MpkernelError as err:
        print(f"mpkernel sim: {err.user_text()}", file=sys.stderr)
        return 1
    try:
        print(f"{sim.label[0].upper()}{sim.label[1:]} is on {sim.pty_path}", flush=True)
        firmware = getattr(sim, "firmware_source", "")
        print(
            f"Use it with: %connect {sim.pty_path}   or   MPKERNEL_PORT={sim.pty_path}\n"
            + (f"Firmware: {firmware}\n" if firmware else "")
            + f"Hard reset: {reset_hint(sim.monitor_address)}\n"
            "Ctrl-C stops it.",
            flush=True,
        )
        try:
            while sim.running:
                sim.wait(1.0)
        except KeyboardInterrupt:
            print("\nStopped the emulated board.")
    finally:
        sim.stop()
    return 0


def reset_hint(monitor_address: str) -> str:
    """How to hard-reset the board from another terminal, for its kind of monitor: the
    command below works on every OS; socat only reaches a unix socket (Linux, macOS)."""
    hint = f"mpkernel sim --reset {monitor_address}"
    if monitor_address.startswith("unix:"):
        path = monitor_address.removeprefix("unix:")
        hint += f"   or   echo system_reset | socat - UNIX-CONNECT:{path}"
    return hint


def cmd_sim_reset(monitor_address: str) -> int:
    """Press the reset button of an emulated board that `mpkernel sim` started."""
    from mpkernel.sim._qemu import send_monitor

    try:
        send_monitor(monitor_address, "system_reset")
    except ValueError as err:
        print(f"mpkernel sim: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"mpkernel sim: no emulated board answers at {monitor_address} ({err}). Is the "
              "`mpkernel sim` that printed it still running?", file=sys.stderr)
        return 1
    print(f"Reset the emulated board at {monitor_address}.")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient.exceptions import CellExecutionError

    from mpkernel.nbrun import LessonClient

    path = Path(args.notebook)
    if not path.exists():
        print(f"mpkernel run: no notebook at {path}", file=sys.stderr)
        return 2
    out = Path(args.output) if args.output else path.with_suffix(".executed.ipynb")
    if args.port:
        os.environ["MPKERNEL_PORT"] = args.port
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as tmp:
        # A kernelspec of our own, so `run` works whether or not `mpkernel install` ran.
        spec_dir_with_argv(Path(tmp) / "kernels" / KERNEL_NAME)
        ksm = KernelSpecManager(kernel_dirs=[str(Path(tmp) / "kernels")])
        # Async: a blocking client would block the loop that times a cell (interrupt_after).
        km = AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=ksm)
        client = LessonClient(
            nb, km=km, timeout=args.timeout, kernel_name=KERNEL_NAME,
            on_cell_executed=_print_cell, resources={"metadata": {"path": str(path.parent)}},
        )
        status = 0
        try:
            client.execute()
        except CellExecutionError as err:
            print(f"\nmpkernel run: a cell failed:\n{err}", file=sys.stderr)
            status = 1
        finally:
            nbformat.write(nb, out)
    print(f"\nWrote the executed notebook to {out}")
    return status


def _print_cell(cell: dict, cell_index: int, execute_reply: dict) -> None:
    if cell.get("cell_type") != "code":
        return
    print(f"--- [{cell_index}] " + cell["source"].split("\n")[0][:70])
    for output in cell.get("outputs", []):
        kind = output.get("output_type")
        if kind == "stream":
            text = output.get("text", "")
            # Progress lines redraw with \r; show their final state.
            print("\n".join(line.split("\r")[-1] for line in text.split("\n")), end="")
        elif kind in ("execute_result", "display_data"):
            print(output.get("data", {}).get("text/plain", ""))
        elif kind == "error":
            print("\n".join(output.get("traceback", [])))
    sys.stdout.flush()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mpkernel", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    install = sub.add_parser("install", help="register the MicroPython kernelspec with Jupyter")
    where = install.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="for this user only")
    where.add_argument("--sys-prefix", action="store_true", help="in this environment")
    where.add_argument("--prefix", help="under this prefix")
    sub.add_parser("kernel", help="run the kernel (Jupyter starts this)", add_help=False)
    sim = sub.add_parser("sim", help="start an emulated board (the micro:bit unless named) "
                         "and print its port")
    sim.add_argument("name", nargs="?", default="", help="which board (--list shows them)")
    sim.add_argument("--list", action="store_true", help="list the emulated boards")
    sim.add_argument("--build", action="store_true",
                     help="build the modern board's firmware (once; cached)")
    sim.add_argument("--force", action="store_true", help="with --build: build again")
    sim.add_argument("--reset", metavar="MONITOR",
                     help="hard-reset a running emulated board through the QEMU monitor that "
                     "`mpkernel sim` printed (unix:PATH or tcp:127.0.0.1:PORT)")
    sub.add_parser("ports", help="list serial ports and what they probably are")
    doctor = sub.add_parser("doctor", help="explain why a board does not answer")
    doctor.add_argument("port", nargs="?", help="the port (default: the one board found)")
    doctor.add_argument("--baud", type=int, default=115200)
    run = sub.add_parser("run", help="execute a notebook on a board, headless (cells tagged "
                         "needs-hardware are skipped, with a note)")
    run.add_argument("notebook")
    run.add_argument("--port", help="the board (default: MPKERNEL_PORT or the one found)")
    run.add_argument("--output", help="where to write the executed copy")
    run.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    flash = sub.add_parser("flash", help="put MicroPython on a board: esptool for ESP chips, "
                           "a drive copy for .uf2/.hex; then connect to show the new version")
    from mpkernel.flash.frontend import add_cli_arguments

    add_cli_arguments(flash)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "kernel":
        return cmd_kernel(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "install":
        return cmd_install(args)
    if args.command == "sim":
        return cmd_sim(args)
    if args.command == "ports":
        from mpkernel.board.ports import cli_main

        return cli_main()
    if args.command == "doctor":
        from mpkernel.board.doctor import cli_main as doctor_main

        return doctor_main(args.port, args.baud)
    if args.command == "run":
        return cmd_run(args)
    if args.command == "flash":
        from mpkernel.flash.frontend import run_cli

        return run_cli(args)
    return 2
