"""What `mpkernel run` adds to nbclient for lessons run headless on an emulated board.

- A code cell tagged `needs-hardware` (flashing an ESP32, a sensor the emulator lacks) is not
  run: its output becomes a visible note saying so, printed and kept in the executed notebook,
  so a reader of either sees that the cell was skipped rather than silently missing.
- A cell whose metadata has `"mpkernel": {"interrupt_after": S}` is interrupted after S
  seconds, as a person presses the stop button (again every S seconds while it runs): how a
  lesson shows a loop being stopped. Tag it `raises-exception` if the stop ends in an error.
"""

from __future__ import annotations

from typing import Any

import nbformat
from nbclient import NotebookClient
from nbclient.util import ensure_async

HARDWARE_TAG = "needs-hardware"


def needs_hardware(cell: Any) -> bool:
    return cell.get("cell_type") == "code" and HARDWARE_TAG in cell.get("metadata", {}).get(
        "tags", []
    )


def interrupt_after(cell: Any) -> float | None:
    value = cell.get("metadata", {}).get("mpkernel", {}).get("interrupt_after")
    return float(value) if value else None


def skipped_note(cell: Any) -> str:
    return (f"[mpkernel run] Skipped: this cell needs real hardware (tagged {HARDWARE_TAG}), "
            "so a headless run on an emulated board does not run it.\n")


class LessonClient(NotebookClient):
    """nbclient's NotebookClient with the two rules above."""

    def __init__(self, nb: Any, timeout: int, **kwargs: Any) -> None:
        super().__init__(nb, timeout=timeout, **kwargs)
        self.timeout_func = lambda cell: interrupt_after(cell) or timeout

    async def async_execute_cell(  # type: ignore[override]
        self, cell: Any, cell_index: int, execution_count: int | None = None,
        store_history: bool = True,
    ) -> Any:
        if needs_hardware(cell):
            note = skipped_note(cell)
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=note)]
            cell.execution_count = None
            print(f"--- [{cell_index}] " + cell.source.split("\n")[0][:70] + "\n" + note,
                  end="", flush=True)
            return cell
        return await super().async_execute_cell(cell, cell_index, execution_count,
                                                store_history)

    async def _async_handle_timeout(self, timeout: int, cell: Any = None) -> Any:
        if cell is not None and interrupt_after(cell) is not None:
            assert self.km is not None
            print(f"[mpkernel run] pressing stop after {timeout:g} s, as the cell asks",
                  flush=True)
            await ensure_async(self.km.interrupt_kernel())
            return None  # keep waiting for the cell's reply, as a person would
        return await super()._async_handle_timeout(timeout, cell)
