"""A local mosquitto for a class or a tutorial: own config, generated credentials, tied to us.

mosquitto 2 listens only on localhost and refuses anonymous clients unless its config says
otherwise; this config opens one listener on the chosen address with a password file of one
generated user, so boards on the LAN can connect and strangers cannot.
"""

from __future__ import annotations

import getpass
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpkernel import platform_support
from mpkernel.host.mqtt.client import MqttError

START_WAIT = 5.0
DEFAULTS_NOTE = ("mosquitto 2 refuses remote and anonymous clients by default; this broker "
                 "listens on {where} and accepts only the generated user.")


@dataclass
class Broker:
    proc: subprocess.Popen[Any]
    host: str  # the address clients on this computer use
    bind: str
    port: int
    user: str
    password: str = field(repr=False)
    folder: str
    version: str
    tie: Any = None

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.tie is not None:
            self.tie.release()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        shutil.rmtree(self.folder, ignore_errors=True)

    def secrets_py(self, broker_address: str) -> str:
        return (
            "# Written by mpkernel's %mqtt broker: where the tutorial's broker is, and the\n"
            "# credentials it generated. Keep this file out of shared notebooks and repos.\n"
            f"MQTT_BROKER = {broker_address!r}\nMQTT_PORT = {self.port}\n"
            f"MQTT_USER = {self.user!r}\nMQTT_PASSWORD = {self.password!r}\n"
        )


def find_mosquitto() -> tuple[str, str]:
    """Paths of mosquitto and mosquitto_passwd, or an error naming the package."""
    paths = [shutil.which(n) or shutil.which(n, path="/usr/sbin:/usr/bin")
             for n in ("mosquitto", "mosquitto_passwd")]
    if not all(paths):
        raise MqttError("mosquitto is not installed on this computer.",
                        "Install it: sudo apt-get install mosquitto (Debian/Ubuntu), "
                        "brew install mosquitto (macOS), or mosquitto.org/download.")
    return paths[0], paths[1]  # type: ignore[return-value]


def free_port(bind: str) -> int:
    with socket.socket() as s:
        s.bind((bind, 0))
        return int(s.getsockname()[1])


def port_taken(bind: str, port: int) -> bool:
    """Whether a listener already holds `port` on `bind` (a bind test, nothing is sent)."""
    with socket.socket() as s:
        # SO_REUSEADDR as a server would set it: a port only in TIME_WAIT counts as free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((bind, port))
        except OSError:
            return True
    return False


def host_addresses() -> list[str]:
    """This computer's IPv4 addresses other boards might reach (without sending a packet)."""
    found: list[str] = []
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # TEST-NET: picks the outgoing interface, sends nothing
            found.append(s.getsockname()[0])
    except OSError:
        pass
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            addr = str(info[4][0])
            if addr not in found and not addr.startswith("127."):
                found.append(addr)
    except OSError:
        pass
    return found


def start_broker(port: int = 1883, bind: str = "0.0.0.0", user: str = "",
                 password: str = "") -> Broker:
    """Start mosquitto; a user and password given again (a restart) keep secrets.py valid."""
    mosquitto, passwd = find_mosquitto()
    port = port or free_port(bind)
    # A port another broker already listens on would answer the readiness check below for
    # this one, which then exits with "Address already in use" a moment later: ask first.
    if port_taken(bind, port):
        raise MqttError(f"Port {port} on {bind} is in use by another program.",
                        f"Port {port} is taken: use %mqtt broker --port N (or stop the other "
                        "broker).")
    folder = tempfile.mkdtemp(prefix="mpkernel-mosquitto-")
    user = user or "mpk-" + secrets.token_hex(2)
    password = password or secrets.token_urlsafe(12)
    pwfile = Path(folder, "passwords")
    made = subprocess.run([passwd, "-b", "-c", str(pwfile), user, password],
                          capture_output=True, text=True, timeout=10)
    if made.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise MqttError(f"mosquitto_passwd failed: {made.stderr.strip()}")
    pwfile.chmod(0o600)
    conf = Path(folder, "mosquitto.conf")
    # Started by root (a CI machine), mosquitto would switch to the user "mosquitto", who
    # cannot read our private folder; it stays who we are (no effect for other users).
    conf.write_text(
        f"user {getpass.getuser()}\n"
        f"listener {port} {bind}\nallow_anonymous false\npassword_file {pwfile}\n"
        "persistence false\nlog_dest stderr\nlog_type error\nlog_type warning\n"
    )
    # Its log goes to a file: a pipe nobody reads would block it on a busy day.
    log = Path(folder, "log")
    with open(log, "w") as log_file:
        proc = subprocess.Popen([mosquitto, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                stderr=log_file, **platform_support.child_popen_options())
    tie = platform_support.tie_to_this_process(proc)
    host = "127.0.0.1" if bind in ("0.0.0.0", "") else bind
    broker = Broker(proc, host, bind, port, user, password, folder, _version(mosquitto), tie)
    deadline = time.monotonic() + START_WAIT
    while True:
        if proc.poll() is not None:
            err = log.read_text(errors="replace").strip()
            broker.stop()
            in_use = "Address already in use" in err
            raise MqttError(f"mosquitto stopped at start: {err or 'no message'}",
                            f"Port {port} is taken: use %mqtt broker --port N."
                            if in_use else "Check the message above.")
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return broker
        except OSError:
            if time.monotonic() > deadline:
                broker.stop()
                raise MqttError(f"mosquitto did not open port {port} within "
                                f"{START_WAIT:.0f} s.") from None
            time.sleep(0.05)


def _version(mosquitto: str) -> str:
    try:
        out = subprocess.run([mosquitto, "-h"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    first = (out.stdout or out.stderr).splitlines()[:1]
    return first[0].replace("mosquitto version", "").strip() if first else ""
