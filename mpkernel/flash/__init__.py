"""Putting MicroPython on a board: the one front end for `%flash` and `mpkernel flash`
(frontend), esptool 5 in-process and drive copies (writers), and which file to flash
(firmware: local, URL, or a board name, with its cache)."""
