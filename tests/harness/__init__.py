"""Test harness: the emulated micro:bit behind a fault-injecting relay (see relay.py)."""

from .relay import (
    BAUD_115200,
    FTDI_LATENCY,
    TO_BOARD,
    TO_HOST,
    USB_SERIAL_LATENCY,
    FakeUsbIdentity,
    Relay,
    Trigger,
    comports_with,
)

__all__ = [
    "BAUD_115200",
    "FTDI_LATENCY",
    "TO_BOARD",
    "TO_HOST",
    "USB_SERIAL_LATENCY",
    "FakeUsbIdentity",
    "Relay",
    "Trigger",
    "comports_with",
]
