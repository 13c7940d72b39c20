"""One MQTT connection from this computer (paho-mqtt 2), shared by `%mqtt` and the bridge.

paho runs its network loop in its own thread; everything here that the kernel's thread reads
(connection outcome, arrived messages, SUBACKs) crosses over through Events and deques, and
every wait has a deadline. Errors become MqttError with the cause and the way out.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mpkernel.errors import MpkernelError

CONNECT_WAIT = 10.0  # s for TCP + CONNACK; a broker on the LAN answers in milliseconds
TLS_HANDSHAKE_WAIT = 5.0  # paho's connect_timeout, which bounds the TLS handshake too
QUEUE = 1000  # messages kept for a board that has not asked yet (oldest dropped)

# MQTT 3.1.1 CONNACK return codes by the name paho 2 gives them (umqtt raises these numbers).
_V3_CODES = {
    "Unsupported protocol version": 1,
    "Client identifier not valid": 2,
    "Server unavailable": 3,
    "Bad user name or password": 4,
    "Not authorized": 5,
}
_REFUSED_HINT = {
    4: "Check the user name and the password (--user, --password-env).",
    5: "The broker refused these credentials: check --user and the password, or the broker's "
       "password file. mosquitto 2 also refuses anonymous clients unless configured to allow "
       "them.",
}


class MqttError(MpkernelError):
    """An MQTT step failed; `code` is the CONNACK return code when the broker refused."""

    def __init__(self, message: str, hint: str = "", code: int | None = None) -> None:
        super().__init__(message, hint)
        self.code = code


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool
    qos: int
    arrived: float  # time.time() on this computer


def check_topic(topic: str, *, wildcards: bool) -> None:
    """Refuse a topic the broker would reject (it would drop the connection instead)."""
    where = "subscription filter" if wildcards else "topic to publish to"
    if not topic:
        raise MqttError(f"The {where} is empty.", "Give a topic such as sensors/temp.")
    if "\x00" in topic or len(topic.encode()) > 65535:
        raise MqttError(f"The {where} {topic!r} contains NUL or is over 65535 bytes.")
    if not wildcards and ("+" in topic or "#" in topic):
        raise MqttError(
            f"The topic {topic!r} contains a wildcard ('+' or '#'); messages are published "
            "to one exact topic.", "Remove the wildcard; wildcards belong in subscriptions."
        )
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if ("#" in level and (level != "#" or i != len(levels) - 1)) or (
            "+" in level and level != "+"
        ):
            raise MqttError(
                f"The filter {topic!r} uses a wildcard inside a level: '+' must be a whole "
                "level and '#' the whole last level.", "For example sensors/+/temp or sensors/#."
            )


# OpenSSL's verify codes for "this computer does not know who signed the certificate": the
# case a private CA (a classroom broker's self-signed certificate) causes, and --cafile cures.
_UNKNOWN_ISSUER = {2, 18, 19, 20, 21}
_HOSTNAME_MISMATCH = 62
TLS_WAY_OUT = ("If the broker uses a private CA (for example a classroom broker with a self-signed "
               "certificate), give that CA's certificate file: %mqtt connect HOST:PORT --tls "
               "--cafile ca.crt")
NOT_TLS_WAY_OUT = ("Use the broker's TLS port (usually 8883), or leave out --tls for a plain port "
                   "(usually 1883).")


def describe_connect_error(err: BaseException, host: str, port: int, tls: bool = False
                           ) -> MqttError:
    """The user's words for a failed connect: the cause, and the way out."""
    where = f"{host}:{port}"
    if isinstance(err, ConnectionRefusedError):
        return MqttError(f"Nothing accepts connections on {where}: no MQTT broker runs there.",
                         "Start one (%mqtt broker), or check the host and port.")
    if isinstance(err, socket.gaierror):
        return MqttError(f"This computer cannot resolve the host name {host!r} ({err}).",
                         "Check the spelling, or use an IP address.")
    if isinstance(err, ssl.SSLCertVerificationError):
        reason = err.verify_message or str(err)
        if err.verify_code == _HOSTNAME_MISMATCH:
            return MqttError(f"TLS certificate verification failed for {where}: the broker's "
                             f"certificate is not made out to {host!r} ({reason}).",
                             "Connect with the host name (or address) the certificate names.")
        hint = (TLS_WAY_OUT if err.verify_code in _UNKNOWN_ISSUER else
                "Check the broker's certificate (its dates) and this computer's clock.")
        return MqttError(f"TLS certificate verification failed for {where}: {reason}. This "
                         "computer does not trust the broker's certificate, so nothing was sent.",
                         hint)
    if isinstance(err, (TimeoutError, socket.timeout)):
        if tls and "handshake" in str(err):
            return MqttError(f"{where} accepted the connection but did not complete a TLS "
                             f"handshake within {TLS_HANDSHAKE_WAIT:.0f} s: it is probably not "
                             "a TLS port.", NOT_TLS_WAY_OUT)
        return MqttError(f"{where} did not answer within {CONNECT_WAIT:.0f} s.",
                         "Check the address and that a firewall lets the port through.")
    if tls and isinstance(err, (ssl.SSLError, ConnectionResetError, ConnectionAbortedError,
                                BrokenPipeError)):
        # A plain MQTT broker reads a TLS hello as a malformed packet and hangs up.
        return MqttError(f"The TLS handshake with {where} failed ({err}): the port does not "
                         "seem to speak TLS.", NOT_TLS_WAY_OUT)
    return MqttError(f"Could not connect to {where}: {err}.", "Check the host and port.")


def tls_context(cafile: str | None = None, insecure: bool = False) -> ssl.SSLContext:
    """The TLS settings of a connection: the system's CAs, or only `cafile`'s; `insecure`
    checks nothing (encrypted, but to whoever answers)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if insecure:
        if cafile is not None:
            raise MqttError("--insecure and --cafile contradict each other: --cafile checks the "
                            "broker's certificate, --insecure checks nothing.",
                            "Use --cafile alone.")
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if cafile is not None:
        path = os.path.expanduser(cafile)
        # Only this CA: a classroom's certificate should not make every site's trusted,
        # and a public CA should not vouch for a broker that says it is the classroom's.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            context.load_verify_locations(cafile=path)
        except FileNotFoundError:
            raise MqttError(f"There is no file {cafile} (--cafile) on this computer "
                            f"(looked in {os.path.abspath(path)}).",
                            "Give the path of the broker's CA certificate (a .crt or .pem "
                            "file), relative to the notebook's folder or absolute.") from None
        except (ssl.SSLError, OSError) as err:
            raise MqttError(f"{cafile} (--cafile) is not a CA certificate this computer can "
                            f"read ({err}).",
                            "It should be a PEM file starting with -----BEGIN CERTIFICATE-----."
                            ) from None
    return context


class Connection:
    """A paho client connected in the background; `wait_ready` says how it went."""

    def __init__(self, host: str, port: int, *, client_id: str = "", user: str | None = None,
                 password: str | None = None, keepalive: int = 60, tls: bool = False,
                 cafile: str | None = None, insecure: bool = False,
                 will: tuple[str, bytes, bool, int] | None = None, clean: bool = True) -> None:
        import paho.mqtt.client as paho

        tls = tls or cafile is not None or insecure
        self.host, self.port = host, port or (8883 if tls else 1883)
        self.tls = tls
        self.client_id = client_id
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=clean, protocol=paho.MQTTv311)
        self.client.connect_timeout = TLS_HANDSHAKE_WAIT
        if user is not None:
            self.client.username_pw_set(user, password)
        if tls:
            self.client.tls_set_context(tls_context(cafile, insecure))
            # paho checks the host name itself too unless told the context does it (or not).
            self.client.tls_insecure_set(insecure)
        if will is not None:
            self.client.will_set(will[0], will[1], will[3], will[2])
        self.keepalive = keepalive or 60
        self.ready = threading.Event()
        self.error: MqttError | None = None
        self.lost = ""
        self.closing = False
        self.messages: deque[Message] = deque(maxlen=QUEUE)
        self.listeners: list[Callable[[Message], None]] = []
        self.on_lost: list[Callable[[str], None]] = []  # called with `lost`, paho's thread
        self._subacks: dict[int, list[int]] = {}
        self._lock = threading.Lock()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    # -- paho's thread ---------------------------------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            code = _V3_CODES.get(str(rc), int(rc.value))
            self.error = MqttError(f"The broker at {self.host}:{self.port} refused the "
                                   f"connection: {rc} (MQTT return code {code}).",
                                   _REFUSED_HINT.get(code, ""), code=code)
            self.closing = True
            client.disconnect()  # stops paho's loop from retrying with the same credentials
        self.ready.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if not self.ready.is_set() and self.error is None:
            # Hung up before its CONNACK: typically a TLS listener that got plain MQTT. Said
            # now, instead of a timeout after paho's loop has retried for CONNECT_WAIT.
            hint = ("If it is the broker's TLS port (often 8883), add --tls." if not self.tls
                    else "Check the port and the broker's log.")
            self.error = MqttError(f"The broker at {self.host}:{self.port} closed the "
                                   "connection without answering the MQTT connect.", hint)
            self.closing = True
            client.disconnect()
            self.ready.set()
            return
        if not self.closing:
            self.lost = f"the broker at {self.host}:{self.port} closed the connection ({rc})"
            for told in list(self.on_lost):
                told(self.lost)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        m = Message(msg.topic, bytes(msg.payload), bool(msg.retain), msg.qos, time.time())
        self.messages.append(m)
        for listener in list(self.listeners):
            listener(m)

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        with self._lock:
            self._subacks[mid] = [int(c.value) for c in codes]

    # -- the kernel's thread ---------------------------------------------------------------
    def start(self) -> None:
        """Connect in a thread of its own (a slow DNS lookup must not stall the kernel)."""

        def run() -> None:
            try:
                self.client.connect(self.host, self.port, self.keepalive)
            except (OSError, ValueError) as err:
                self.error = describe_connect_error(err, self.host, self.port, self.tls)
                self.ready.set()
                return
            self.client.loop_start()

        threading.Thread(target=run, name="mpkernel-mqtt-connect", daemon=True).start()

    def outcome(self) -> MqttError | None:
        """None once connected, the error if it failed; call after `ready` is set."""
        return self.error

    def wait_ready(self, timeout: float = CONNECT_WAIT, should_stop: Callable[[], bool] = bool
                   ) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.05):
            if should_stop():
                self.close()
                raise MqttError("Connecting was interrupted.")
            if time.monotonic() > deadline:
                self.close()
                raise describe_connect_error(TimeoutError(), self.host, self.port, self.tls)
        if self.error is not None:
            self.close()
            raise self.error

    def check_alive(self) -> None:
        if self.lost:
            raise MqttError(f"Not connected: {self.lost}.", "Connect again.")

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> Any:
        check_topic(topic, wildcards=False)
        if qos not in (0, 1, 2):
            raise MqttError(f"QoS {qos} does not exist.", "Use 0, 1 or 2.")
        self.check_alive()
        info = self.client.publish(topic, payload, qos, retain)
        if info.rc != 0:
            raise MqttError(f"Publishing to {topic!r} failed: {info.rc}.", "Connect again.")
        return info

    def subscribe(self, topic: str, qos: int = 0) -> int:
        """Send SUBSCRIBE; return its message id (see `suback`)."""
        check_topic(topic, wildcards=True)
        self.check_alive()
        rc, mid = self.client.subscribe(topic, qos)
        if rc != 0:
            raise MqttError(f"Subscribing to {topic!r} failed: {rc}.", "Connect again.")
        return int(mid)

    def suback(self, mid: int) -> list[int] | None:
        with self._lock:
            return self._subacks.pop(mid, None)

    def wait_suback(self, mid: int, topic: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while (codes := self.suback(mid)) is None:
            self.check_alive()
            if time.monotonic() > deadline:
                raise MqttError(f"The broker did not confirm the subscription to {topic!r} "
                                f"within {timeout:.0f} s.", "Check the connection and retry.")
            time.sleep(0.01)
        if any(c >= 0x80 for c in codes):
            raise MqttError(f"The broker refused the subscription to {topic!r}.",
                            "The user may lack the right to read it (the broker's ACL).")

    def close(self) -> None:
        self.closing = True
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()
