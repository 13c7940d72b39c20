"""Test doubles: pyserial URL handlers (`fakeserial://`) and fake port listers."""
