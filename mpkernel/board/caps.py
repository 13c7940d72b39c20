"""What the firmware on a board offers, read with one probe exec per connection.

Nothing is assumed from the port or the firmware's name: the micro:bit's v1.9.2 has no
os.stat, no hashlib and 9 KB of RAM, and code that guessed otherwise would fail on it.
"""

from __future__ import annotations

from dataclasses import dataclass

# One exec that reads what the firmware has, inside a function so it leaves no names behind.
PROBE = """\
def __mpk_probe():
 import sys,gc
 try:
  import os
 except ImportError:
  import uos as os
 def has(*names):
  for n in names:
   try:
    __import__(n);return True
   except ImportError:
    pass
  return False
 u=os.uname() if hasattr(os,'uname') else None
 gc.collect()
 print(repr((sys.platform,tuple(sys.implementation.version),u and u.version,u and u.machine,
  gc.mem_free() if hasattr(gc,'mem_free') else -1,hasattr(os,'stat'),hasattr(os,'ilistdir'),
  hasattr(os,'mkdir'),has('hashlib','uhashlib'),has('binascii','ubinascii'),has('deflate'),
  hasattr(os,'statvfs'),hasattr(os,'rename'))))
__mpk_probe()
del __mpk_probe
"""


@dataclass
class Capabilities:
    """What the firmware offers, read once per connection (never assumed)."""

    platform: str = ""
    version: tuple[int, ...] = ()
    firmware: str = ""
    machine: str = ""
    mem_free: int = -1
    stat: bool = False
    ilistdir: bool = False
    mkdir: bool = False
    hashlib: bool = False
    binascii: bool = False
    deflate: bool = False
    statvfs: bool = False
    rename: bool = False
    raw_paste: bool = False

    def max_plain_cell(self) -> int:
        """Largest program plain raw mode may send: the board buffers all of it in RAM, and
        an 8.5 KB program wedges a micro:bit with 9 KB free until a hard reset."""
        if self.mem_free <= 0:
            return 16 * 1024
        return max(1024, int(self.mem_free * 0.6))
