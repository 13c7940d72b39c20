"""What runs on the computer next to the board: the `board` object of `%%host` cells, live
plots of board output, mip installs with the host doing the download, and cell timing.

The kernel calls `prepare_host_cell` before each `%%host` cell; everything else is used by
the magics in mpkernel/magics/host.py and mpkernel/magics/timing.py.
"""

from __future__ import annotations

from typing import Any


def prepare_host_cell(kernel: Any) -> None:
    """Give the host IPython a `board` object for the coming `%%host` cell (kept between
    cells; a name the user rebound is left alone) and forget interrupts of earlier cells."""
    from mpkernel.host.proxy import BoardProxy

    shell = kernel.shell
    proxy = getattr(kernel, "_mpk_board_proxy", None)
    if proxy is None:
        proxy = BoardProxy(kernel)
        kernel._mpk_board_proxy = proxy
    current = shell.user_ns.get("board")
    if current is None or isinstance(current, BoardProxy):
        shell.user_ns["board"] = proxy
    proxy.new_cell()
