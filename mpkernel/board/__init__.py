"""Talking to one board: the port (link, ports, doctor), the raw REPL protocol (rawrepl), the
one owner of the connection's state (board.Board, built by connect), what the firmware offers
(caps), and stopping what runs on it (interrupts). Rescue, which also renames main.py,
sits above files/ as mpkernel/rescue.py."""
