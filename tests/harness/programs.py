"""Board programs that catch KeyboardInterrupt, for the interrupt and rescue tests.

A single `while True: try: ... except: pass` is not a reliable Ctrl-C swallower: a Ctrl-C that
arrives while its handler runs is raised at the jump back to the loop, outside the `try`, and
ends the program. On the fast modern board the interrupt ladder's closing burst was seen to
land there (a CI run where the ladder stopped the program the test said it could not stop).
Here every loop is the body of an outer guarded loop, `LEVELS` deep: to end the program a
Ctrl-C has to land in a handler's few microseconds once per level, in a row.
"""

from __future__ import annotations

LEVELS = 4


def swallowing(body: list[str], prelude: list[str] | None = None,
               time_module: str = "utime") -> str:
    """A program that runs `body` (unindented lines) forever and catches every exception at
    each of LEVELS nested loops. `prelude` runs first, outside any try: that is where
    %rescue's Ctrl-C at boot lands."""
    lines = [f"import {time_module}", *(prelude or [])]
    lines.append("def __guard(n):")
    lines.append(" while True:")
    lines.append("  try:")
    lines.append("   if n:")
    lines.append("    __guard(n-1)")
    lines.append("   else:")
    lines.extend("    " + line for line in body)
    lines.append("  except:")
    lines.append("   pass")
    lines.append(f"__guard({LEVELS - 1})")
    return "\n".join(lines) + "\n"
