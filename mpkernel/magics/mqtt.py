"""%mqtt: MQTT from the notebook (paho-mqtt), a local broker, and the bridge for boards
without a network."""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from mpkernel.errors import MpkernelError
from mpkernel.host.mqtt import bridge
from mpkernel.host.mqtt.client import Connection, Message, MqttError, check_topic
from mpkernel.magics import MagicContext, arg, magic

# The relay answers any board cell (a board with the bridge from an earlier session too).
bridge.register()

ACTIONS = ("connect", "pub", "sub", "watch", "stop", "broker", "bridge")
WATCH_ROWS = 20
PUB_ECHO_WAIT = 1.0  # s a %mqtt pub waits for a watch here to receive its message
BRIDGE_FLAT = ("umqtt.py", "umqtt.py/simple.py")  # flat names the micro:bit's import resolves
BRIDGE_TAG = "mpkernel MQTT bridge"


@dataclass
class Watch:
    topic: str
    display_id: str
    listener: Callable[[Message], None]
    on_lost: Callable[[str], None]
    rows: list[str] = field(default_factory=list)
    count: int = 0
    shown: bool = False  # its display_data went out; updates may follow
    lost: str = ""  # why the connection ended under it, if it did


@dataclass
class MqttState:
    conn: Connection | None = None
    where: str = ""
    relay: bridge.Relay = bridge.RELAY
    broker: Any = None  # broker.Broker
    credentials: tuple[str, str] = ("", "")  # kept for a restarted broker (secrets.py stays)
    watches: list[Watch] = field(default_factory=list)


def _state(ctx: MagicContext) -> MqttState:
    state = ctx.state.get("mqtt")
    if state is None:
        state = ctx.state["mqtt"] = MqttState()
    return state


@magic(
    "mqtt",
    arg("action", choices=ACTIONS, help="what to do"),
    arg("words", nargs="*", help="HOST[:PORT] | TOPIC [MESSAGE]"),
    arg("--user", help="user name for connect"),
    arg("--password-env", metavar="VAR", help="environment variable holding the password"),
    arg("--tls", action="store_true", help="connect with TLS (port 8883 by default)"),
    arg("--cafile", metavar="PATH", help="connect: trust only this CA certificate (implies --tls)"),
    arg("--insecure", action="store_true",
        help="connect: TLS without checking the certificate (unsafe; implies --tls)"),
    arg("--retain", action="store_true", help="pub: the broker keeps the message for later"),
    arg("--qos", type=int, default=0, choices=(0, 1, 2), help="pub: quality of service"),
    arg("--for", dest="seconds", type=float, help="sub: listen this many seconds"),
    arg("--count", type=int, help="sub: stop after this many messages"),
    arg("--port", type=int, default=1883, help="broker: port to listen on (0 = any free one)"),
    arg("--bind", default="0.0.0.0", help="broker: address to listen on"),
    arg("--force", action="store_true", help="bridge: replace a real umqtt.simple"),
    arg("--broker", action="store_true", help="stop: also stop the broker started here"),
)
def mqtt(ctx: MagicContext, args: argparse.Namespace) -> None:
    """MQTT from the notebook, on this computer:

    - `%mqtt connect HOST[:PORT] [--user U] [--password-env VAR] [--tls [--cafile PATH]]`:
      connect the notebook. The password comes from an environment variable, never from the
      cell (a saved notebook would keep it): set it before starting Jupyter, or in a `%%host`
      cell with `os.environ['VAR'] = getpass.getpass()`.
      `--tls` encrypts the connection (port 8883 unless given) and checks the broker's
      certificate against the CAs this computer trusts. A broker with a certificate of its own
      making (a classroom broker, a self-signed certificate) fails that check: get its CA
      certificate file from whoever runs it and add `--cafile PATH` (implies --tls) to trust
      that CA, and only it, for this connection.
      `--insecure` (implies --tls) skips the check: the traffic is encrypted, but to whoever
      answers, so anyone on the network between here and the broker can pose as it, read the
      messages and take the password. For a first try on your own network only; `--cafile` is
      the fix.
    - `%mqtt pub TOPIC MESSAGE [--retain] [--qos N]`: publish (quote a message with spaces).
    - `%mqtt sub TOPIC [--for SECONDS | --count N]`: show messages as they arrive, until
      the time or count is reached or the cell is interrupted.
    - `%mqtt watch TOPIC`: a display that keeps showing the latest messages in the
      background, while other cells run (board cells included). Run headless (`mpkernel
      run`, nbconvert), the saved notebook shows it as it was after the last message that
      arrived while a cell ran. A `%mqtt pub` to a watched topic waits (up to a second)
      until the watch has it back from the broker.
    - `%mqtt stop [--broker]`: stop watches, disconnect, close the bridge's connections;
      with --broker also the broker started here (it also stops with the kernel).
    - `%mqtt broker [--port N] [--bind ADDR]`: start a local mosquitto with a generated user
      and password, written to the board as `secrets.py` (MQTT_BROKER, MQTT_PORT, MQTT_USER,
      MQTT_PASSWORD), and connect the notebook to it. Run again while it runs, it writes
      secrets.py again; started again in the same session, it keeps the user and password,
      so a board that imported secrets.py still gets in.
    - `%mqtt bridge`: for boards without a network (micro:bit, Pico): puts a module on the
      board so that `from umqtt.simple import MQTTClient` works and its traffic goes through
      this notebook while a cell runs (the computer opens the connection the board asks for).
    """
    handler = {"connect": _connect, "pub": _pub, "sub": _sub, "watch": _watch, "stop": _stop,
               "broker": _broker, "bridge": _bridge}[args.action]
    handler(ctx, args)


def _words(args: argparse.Namespace, names: str, at_least: int) -> list[str]:
    if len(args.words) < at_least:
        raise MpkernelError(f"%mqtt {args.action} needs {names}.",
                            f"For example: %mqtt {args.action} {_EXAMPLES[args.action]}")
    return args.words


_EXAMPLES = {"connect": "test.mosquitto.org:1883", "pub": "demo/led on", "sub": "demo/# --for 10",
             "watch": "demo/#"}


def _need_conn(ctx: MagicContext) -> Connection:
    state = _state(ctx)
    if state.conn is None:
        raise MpkernelError("The notebook is not connected to an MQTT broker.",
                            "Run %mqtt connect HOST first, or %mqtt broker to start one here.")
    state.conn.check_alive()
    return state.conn


@contextmanager
def _until_interrupted() -> Iterator[threading.Event]:
    """An Event set by the cell's interrupt (the kernel's own handler only reaches a board)."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _open(ctx: MagicContext, host: str, port: int, *, user: str | None = None,
          password: str | None = None, tls: bool = False, cafile: str | None = None,
          insecure: bool = False) -> Connection:
    state = _state(ctx)
    # Built first: a --cafile that cannot be read leaves the current connection as it is.
    conn = Connection(host, port, client_id=f"mpkernel-{uuid.uuid4().hex[:8]}", user=user,
                      password=password, tls=tls, cafile=cafile, insecure=insecure)
    if state.conn is not None:
        _stop_watches(ctx, state)
        state.conn.close()
        state.conn = None
    conn.start()
    with _until_interrupted() as stop:
        conn.wait_ready(should_stop=stop.is_set)
    state.conn = conn
    state.where = f"{conn.host}:{conn.port}"
    return conn


def _connect(ctx: MagicContext, args: argparse.Namespace) -> None:
    target = _words(args, "HOST[:PORT]", 1)[0]
    host, _, port_text = target.rpartition(":") if ":" in target else (target, "", "")
    try:
        port = int(port_text) if port_text else 0
    except ValueError:
        raise MpkernelError(f"{port_text!r} is not a port number.",
                            "Write HOST:PORT, e.g. broker.local:1883.") from None
    password = None
    if args.password_env:
        password = os.environ.get(args.password_env)
        if password is None:
            raise MpkernelError(
                f"The environment variable {args.password_env} is not set, so there is no "
                "password to send.",
                f"Set it before starting Jupyter (export {args.password_env}=...), or in a "
                f"%%host cell: import os, getpass; os.environ[{args.password_env!r}] = "
                "getpass.getpass()",
            )
    conn = _open(ctx, host, port, user=args.user, password=password, tls=args.tls,
                 cafile=args.cafile, insecure=args.insecure)
    who = f" as {args.user}" if args.user else ""
    how = ""
    if args.insecure:
        how = (" with TLS, WITHOUT checking the broker's certificate: anyone between here and "
               "the broker could pose as it, read the messages"
               + (" and the password" if password is not None else "")
               + ". Use --cafile PATH with the broker's CA certificate instead")
    elif args.cafile:
        how = f" with TLS (certificate checked against {args.cafile})"
    elif conn.tls:
        how = " with TLS"
    ctx.write(f"Connected to {conn.host}:{conn.port}{who}{how}.\n")


def _pub(ctx: MagicContext, args: argparse.Namespace) -> None:
    from paho.mqtt.client import topic_matches_sub

    words = _words(args, "TOPIC and MESSAGE", 2)
    conn = _need_conn(ctx)
    topic, message = words[0], " ".join(words[1:])
    payload = message.encode()
    echoed = threading.Event()

    def echo(m: Message) -> None:
        # Called after the watches' listeners (added before it): their update is out.
        if m.topic == topic and m.payload == payload:
            echoed.set()

    watched = any(topic_matches_sub(w.topic, topic) for w in _state(ctx).watches)
    if watched:
        conn.listeners.append(echo)
    try:
        info = conn.publish(topic, payload, args.qos, args.retain)
        # Returning before it left this computer would race a board cell that waits for it.
        try:
            info.wait_for_publish(5.0)
        except (RuntimeError, ValueError) as err:
            raise MqttError(f"Publishing to {topic} failed: {err}.", "Connect again.") from None
        if not info.is_published():
            raise MqttError(f"The message to {topic} was not sent within 5 s.",
                            "Check the connection (%mqtt connect again).")
        if watched:
            # A watch here gets the message back from the broker within moments: waiting
            # for that (briefly) keeps its update inside this cell, where a headless run
            # records it (see _update_parent) and a reader sees it next to this output.
            echoed.wait(PUB_ECHO_WAIT)
    finally:
        if watched:
            conn.listeners.remove(echo)
    retained = ", retained" if args.retain else ""
    ctx.write(f"Published {len(payload)} bytes to {topic} (QoS {args.qos}{retained}).\n")


def _payload_text(payload: bytes) -> str:
    try:
        return payload.decode()
    except UnicodeDecodeError:
        return repr(payload)


def _sub(ctx: MagicContext, args: argparse.Namespace) -> None:
    import queue

    from paho.mqtt.client import topic_matches_sub

    topic = _words(args, "TOPIC", 1)[0]
    if args.seconds is not None and args.count is not None:
        raise MpkernelError("Give --for or --count, not both.", "%mqtt sub TOPIC --count 5")
    conn = _need_conn(ctx)
    # Refused here: an UNSUBSCRIBE of a malformed filter (the clean-up below) would make the
    # broker drop the notebook's connection.
    check_topic(topic, wildcards=True)
    arrived: queue.Queue[Message] = queue.Queue()

    def listener(m: Message) -> None:
        if topic_matches_sub(topic, m.topic):
            arrived.put(m)

    conn.listeners.append(listener)
    started = time.monotonic()
    got = 0
    why = "interrupted"
    try:
        conn.wait_suback(conn.subscribe(topic), topic)
        until = "" if args.seconds is None else f" for {args.seconds:g} s"
        ctx.write(f"Listening to {topic}{until} (interrupt to stop)...\n")
        with _until_interrupted() as stop:
            while not stop.is_set():
                if args.count is not None and got >= args.count:
                    why = f"--count {args.count}"
                    break
                if args.seconds is not None and time.monotonic() - started >= args.seconds:
                    why = f"--for {args.seconds:g}"
                    break
                conn.check_alive()
                try:
                    m = arrived.get(timeout=0.05)
                except queue.Empty:
                    continue
                got += 1
                ctx.write(f"{m.topic}: {_payload_text(m.payload)}\n")
    finally:
        conn.listeners.remove(listener)
        # A watch on the very same filter shares its subscription (one per filter per client).
        watched = any(w.topic == topic for w in _state(ctx).watches)
        if not conn.lost and not watched:
            conn.client.unsubscribe(topic)
    ctx.write(f"Stopped ({why}): {got} message{'s' if got != 1 else ''} on {topic} in "
              f"{time.monotonic() - started:.1f} s.\n")


def _watch(ctx: MagicContext, args: argparse.Namespace) -> None:
    from paho.mqtt.client import topic_matches_sub

    topic = _words(args, "TOPIC", 1)[0]
    conn = _need_conn(ctx)
    kernel = ctx.kernel
    display_id = f"mqtt-watch-{uuid.uuid4().hex[:8]}"
    # The display goes out under this cell's request: the one the frontend shows it under.
    own = kernel.get_parent("shell") if kernel is not None else None
    lock = threading.Lock()

    def send(kind: str) -> None:
        text = "\n".join([_watch_status(watch), *watch.rows])
        if kernel is None:
            ctx.write(text + "\n")
            return
        content = {"data": {"text/plain": text}, "metadata": {},
                   "transient": {"display_id": display_id}}
        parent = own if kind == "display_data" else _update_parent(kernel, own)
        kernel.session.send(kernel.iopub_socket, kind, content, parent=parent,
                            ident=kernel._topic(kind))

    def listener(m: Message) -> None:
        if not topic_matches_sub(topic, m.topic):
            return
        with lock:
            watch.count += 1
            stamp = time.strftime("%H:%M:%S", time.localtime(m.arrived))
            retained = " (retained)" if m.retain else ""
            watch.rows = ([f"{stamp} {m.topic}: {_payload_text(m.payload)}{retained}"]
                          + watch.rows)[:WATCH_ROWS]
            if watch.shown:
                send("update_display_data")

    def lost(why: str) -> None:
        # A display still saying "watching" after the broker went would be a quiet lie.
        with lock:
            watch.lost = why
            if watch.shown:
                send("update_display_data")

    watch = Watch(topic, display_id, listener, lost)
    # Listening before subscribing: the retained messages the broker sends right after its
    # SUBACK are in the first display instead of lost.
    conn.listeners.append(listener)
    conn.on_lost.append(lost)
    try:
        conn.wait_suback(conn.subscribe(topic), topic)
    except MpkernelError:
        conn.listeners.remove(listener)
        conn.on_lost.remove(lost)
        raise
    with lock:
        send("display_data")
        watch.shown = True
    _state(ctx).watches.append(watch)


def _update_parent(kernel: Any, own: Any) -> Any:
    """The request an update of a watch goes out under (it is sent from paho's thread).

    JupyterLab (and Notebook 7, built on it) routes an update by its display_id to the
    cell that showed the display, whatever its parent (tests/test_browser.py). A headless
    run (nbconvert, `mpkernel run`: nbclient) reads only the messages of the cell it is
    running and drops the rest, yet applies an update_display_data to the earlier display
    with that id: sent under the running cell, the messages that arrive while later cells
    run reach the saved notebook too.
    """
    current = kernel.get_parent("shell")  # from another thread: the latest request
    if isinstance(current, dict) and current.get("header", {}).get("msg_type") == (
            "execute_request"):
        return current
    return own


def _watch_status(watch: Watch) -> str:
    if watch.lost:
        return (f"MQTT {watch.topic} (stopped: {watch.lost}; {watch.count} messages, newest "
                "first; %mqtt connect again, then %mqtt watch)")
    return f"MQTT {watch.topic} (watching; {watch.count} messages, newest first; %mqtt stop ends)"


def _stop_watches(ctx: MagicContext, state: MqttState) -> int:
    stopped = len(state.watches)
    for watch in state.watches:
        if state.conn is not None and watch.listener in state.conn.listeners:
            state.conn.listeners.remove(watch.listener)
            state.conn.on_lost.remove(watch.on_lost)
    state.watches.clear()
    return stopped


def _stop(ctx: MagicContext, args: argparse.Namespace) -> None:
    state = _state(ctx)
    said = []
    watches = _stop_watches(ctx, state)
    if watches:
        said.append(f"{watches} watch{'es' if watches != 1 else ''}")
    if state.conn is not None:
        state.conn.close()
        said.append(f"the connection to {state.where}")
        state.conn = None
    if state.relay.conns:
        said.append(f"{len(state.relay.conns)} bridged board connection(s)")
        state.relay.close_all()
    if state.broker is not None and args.broker:
        state.broker.stop()
        said.append(f"the broker on port {state.broker.port}")
        state.broker = None
    ctx.write(("Stopped " + ", ".join(said) + ".\n") if said else "Nothing MQTT was running.\n")


def _broker(ctx: MagicContext, args: argparse.Namespace) -> None:
    from mpkernel.host.mqtt import broker as brokers

    state = _state(ctx)
    b = state.broker
    if b is not None and b.running and (args.port not in (0, b.port) or args.bind != b.bind):
        raise MpkernelError(f"A broker already runs here on {b.bind} port {b.port}.",
                            "%mqtt stop --broker stops it first.")
    if b is None or not b.running:
        # A restart keeps the user and password: a board that imported secrets.py gets in.
        b = brokers.start_broker(args.port, args.bind, *state.credentials)
        state.broker = b
        state.credentials = (b.user, b.password)
    local = args.bind not in ("0.0.0.0", "")
    addresses = [args.bind] if local else (brokers.host_addresses() or ["127.0.0.1"])
    board_addr = addresses[0]
    where = "this computer only" if args.bind.startswith("127.") else (
        f"{args.bind}" if local else "all of this computer's addresses")
    ctx.write(brokers.DEFAULTS_NOTE.format(where=where) + "\n")
    if state.conn is None or state.conn.lost or state.where != f"{b.host}:{b.port}":
        _open(ctx, b.host, b.port, user=b.user, password=b.password)
    try:
        from mpkernel.magics.files import _fs

        _fs(ctx).put(b.secrets_py(board_addr).encode(), "secrets.py")
        saved = "user and password in secrets.py on the board"
    except MpkernelError as err:
        # The broker runs; running %mqtt broker again only writes secrets.py again.
        saved = f"secrets.py NOT written ({err}; run %mqtt broker again to retry)"
    ctx.write(f"MQTT broker (mosquitto {b.version}) on {', '.join(addresses)} port {b.port}; "
              f"{saved}; the notebook is connected.\n")


def _bridge(ctx: MagicContext, args: argparse.Namespace) -> None:
    board = ctx.board
    from mpkernel.magics.files import _fs

    fs = _fs(ctx)
    flat = fs.info().flat
    transport, client = bridge.board_source(microbit=board.caps.platform == "microbit")
    source = (transport + client).encode()
    if flat:
        target = BRIDGE_FLAT[0]
    else:
        in_lib = board.exec("print('/lib' in __import__('sys').path)").strip() == "True"
        target = "/lib/umqtt/simple.py" if in_lib else "umqtt/simple.py"
    if fs.kind(target) == "file" and not args.force:
        if BRIDGE_TAG.encode() not in fs.get(target)[:200]:
            raise MpkernelError(
                f"{target} on the board is not mpkernel's bridge: probably the real umqtt "
                "(installed with %mip), which needs a network on the board. Nothing was changed.",
                "%mqtt bridge --force replaces it with the bridge.")
    if flat:
        fs.put(transport.encode(), target)
        _put_flat_with_slash(fs, BRIDGE_FLAT[1],
                             "from umqtt import MQTTException,_b,_c\n" + client)
        where = " and ".join(BRIDGE_FLAT)
    else:
        folders = ("/lib", "/lib/umqtt") if target.startswith("/lib") else ("umqtt",)
        for folder in folders:
            if fs.kind(folder) is None:
                fs.mkdir(folder)
        fs.put(source, target)
        where = target
    # A module imported before (an older bridge, or the real one) would stay in use.
    board.exec("def __mpk_mq():\n import sys\n for m in ('umqtt.simple','umqtt'):\n"
               "  try:\n   sys.modules.pop(m,0)\n  except AttributeError:\n   pass\n"
               "__mpk_mq()\ndel __mpk_mq\n")
    freed = ""
    if flat:
        # Each upload leaves interned names behind in the micro:bit's 16 KB of RAM, and the
        # bridge must compile in what is left: a soft reset gives it all back.
        board.soft_reset()
        freed = (" The board was soft-reset to free the RAM the upload used (its variables are "
                 "gone).")
    ctx.write(f"MQTT bridge on the board ({where}, {len(source)} bytes, verified): "
              "`from umqtt.simple import MQTTClient` works; while a cell runs, this computer "
              f"opens the connections the board asks for.{freed}\n")


def _put_flat_with_slash(fs: Any, name: str, text: str) -> None:
    """A file whose name has a '/' (the micro:bit's import resolves `umqtt.simple` to it; the
    file commands refuse such names on a flat filesystem): a verified upload under a plain
    name, copied to `name`, and the copy compared by length and byte sum."""
    temp = "umqtt_s.tmp"
    fs.put(text.encode(), temp)
    board = fs.board
    # Journalled and room-checked: a copy that overran the micro:bit's filesystem damaged
    # other files (issue 13).
    fs.move(temp, name, replace=True, any_name=True)
    out = board.exec(f"f=open({name!r})\nd=f.read()\nf.close()\n"
                     "print(len(d),sum(bytes(d,'utf8')))\ndel f,d\n")
    want = f"{len(text)} {sum(text.encode())}"
    if out.strip() != want:
        raise MqttError(f"The copy {name} on the board did not verify (read back "
                        f"{out.strip()!r}, expected {want!r}).", "Run %mqtt bridge again.")
