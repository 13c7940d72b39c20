"""%mqtt connect --tls against a real mosquitto on 127.0.0.1 with a TLS listener whose
certificate a throwaway CA, made here, signed (the classroom broker with a private CA), and a
plain listener next to it. The kernel never needs its board for these cells.

The certificates are made here with `cryptography` (the test extra names it; esptool happens
to need it too); nothing is downloaded.
"""

from __future__ import annotations

import datetime
import getpass
import ipaddress
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from host_kernel import Notebook, notebook

from mpkernel.host.mqtt import broker as brokers
from mpkernel.host.mqtt.client import Connection, MqttError


def make_ca_and_server(folder: Path, name: str) -> tuple[Path, Path, Path]:
    """A CA certificate, and a server certificate and key for 127.0.0.1 it signed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    valid = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(valid[0]).not_valid_after(valid[1])
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    server = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
              .issuer_name(ca_name).public_key(key.public_key())
              .serial_number(x509.random_serial_number())
              .not_valid_before(valid[0]).not_valid_after(valid[1])
              .add_extension(x509.SubjectAlternativeName(
                  [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                             critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                  ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
    paths = folder / f"{name}.pem", folder / f"{name}-server.pem", folder / f"{name}-server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    paths[2].chmod(0o600)
    return paths


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """mosquitto with a TLS listener (certificate from the 'classroom' CA) and a plain one;
    a second CA ('stranger') that signed nothing this broker shows."""
    folder = tmp_path_factory.mktemp("tls")
    ca, cert, key = make_ca_and_server(folder, "classroom")
    stranger = make_ca_and_server(folder, "stranger")[0]
    mosquitto = brokers.find_mosquitto()[0]
    tls_port, plain_port = brokers.free_port("127.0.0.1"), brokers.free_port("127.0.0.1")
    conf = folder / "mosquitto.conf"
    # Anonymous is fine here: loopback only, and these tests are about TLS, not passwords.
    conf.write_text(f"user {getpass.getuser()}\nper_listener_settings false\n"
                    "allow_anonymous true\npersistence false\nlog_dest stderr\n"
                    f"listener {tls_port} 127.0.0.1\ncertfile {cert}\nkeyfile {key}\n"
                    f"listener {plain_port} 127.0.0.1\n")
    log = open(folder / "log", "w")  # noqa: SIM115 - closed after mosquitto stops
    proc = subprocess.Popen([mosquitto, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=log)
    try:
        deadline = time.monotonic() + 5
        while not all(_listening(p) for p in (tls_port, plain_port)):
            assert proc.poll() is None, (folder / "log").read_text()
            assert time.monotonic() < deadline, "mosquitto did not open its ports in 5 s"
            time.sleep(0.05)
        yield {"tls": tls_port, "plain": plain_port, "ca": str(ca), "stranger": str(stranger)}
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def nb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Notebook]:
    # connect=False: no board cell runs, so the emulated board never boots.
    with notebook(tmp_path_factory.mktemp("tls-kernel"), connect=False) as running:
        yield running


def said(cell: Any) -> str:
    """An error as the notebook shows it: what happened (the error) and the way out (in the
    error, or a note on stdout after it)."""
    assert cell.error is not None, (cell.stdout, cell.reply)
    return ("\n".join(cell.error["traceback"]) + "\n" + cell.stdout).strip()


def test_tls_with_the_classroom_ca_connects_and_round_trips(nb: Notebook,
                                                            tls_broker: dict[str, Any]) -> None:
    port, ca = tls_broker["tls"], tls_broker["ca"]
    cell = nb.run(f"%mqtt connect 127.0.0.1:{port} --tls --cafile {ca}")
    assert cell.stdout == (f"Connected to 127.0.0.1:{port} with TLS (certificate checked "
                           f"against {ca}).\n"), (cell.error, cell.stdout)
    pub = nb.run("%mqtt pub lesson/tls 'over TLS' --retain --qos 1")
    assert pub.stdout == "Published 8 bytes to lesson/tls (QoS 1, retained).\n", pub.error
    sub = nb.run("%mqtt sub lesson/tls --count 1", timeout=30)
    assert sub.stdout.splitlines()[1] == "lesson/tls: over TLS", (sub.error, sub.stdout)
    # A client on the plain listener sees it too: it went through this broker, over TLS.
    plain = Connection("127.0.0.1", tls_broker["plain"])
    plain.start()
    plain.wait_ready()
    try:
        plain.wait_suback(plain.subscribe("lesson/tls"), "lesson/tls")
        deadline = time.monotonic() + 5
        while not plain.messages and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [(m.topic, m.payload) for m in plain.messages] == [("lesson/tls", b"over TLS")]
    finally:
        plain.close()
    assert nb.run("%mqtt stop").stdout == f"Stopped the connection to 127.0.0.1:{port}.\n"


def test_an_untrusted_certificate_names_the_cause_and_the_way_out(
        nb: Notebook, tls_broker: dict[str, Any]) -> None:
    port = tls_broker["tls"]
    for extra in ("", f" --cafile {tls_broker['stranger']}"):
        # Without --cafile: this computer's CAs; with another CA's file: only that one.
        started = time.monotonic()
        cell = nb.run(f"%mqtt connect 127.0.0.1:{port} --tls{extra}", timeout=30)
        text = said(cell)
        assert time.monotonic() - started < 5, text
        assert text.startswith(f"TLS certificate verification failed for 127.0.0.1:{port}: "
                               "unable to get local issuer certificate. This computer does not "
                               "trust the broker's certificate, so nothing was sent."), text
        assert "give that CA's certificate file: %mqtt connect HOST:PORT --tls --cafile" in text
    # The kernel is still there, and the notebook is not connected.
    pub = nb.run("%mqtt pub lesson/x y")
    assert said(pub).startswith("The notebook is not connected to an MQTT broker.")
    missing = nb.run(f"%mqtt connect 127.0.0.1:{port} --cafile no-such-ca.pem")
    assert said(missing).startswith("There is no file no-such-ca.pem (--cafile) on this "
                                    "computer")
    not_pem = nb.run(f"%mqtt connect 127.0.0.1:{port} --cafile {Path(__file__)}")
    assert " (--cafile) is not a CA certificate this computer can read" in said(not_pem)


def test_tls_to_a_plain_port_fails_at_once_and_the_kernel_goes_on(
        nb: Notebook, tls_broker: dict[str, Any]) -> None:
    plain = tls_broker["plain"]
    started = time.monotonic()
    cell = nb.run(f"%mqtt connect 127.0.0.1:{plain} --tls", timeout=30)
    text = said(cell)
    # mosquitto hangs up on a TLS hello at once; the deadline is paho's 5 s handshake limit.
    assert time.monotonic() - started < 5, text
    assert text.startswith(f"The TLS handshake with 127.0.0.1:{plain} failed ("), text
    assert "the port does not seem to speak TLS.\nUse the broker's TLS port (usually 8883), " \
           "or leave out --tls for a plain port (usually 1883)." in text
    # The same address without --tls works: the kernel and its MQTT state are fine.
    again = nb.run(f"%mqtt connect 127.0.0.1:{plain}")
    assert again.stdout == f"Connected to 127.0.0.1:{plain}.\n", again.error
    assert nb.run("%mqtt stop").ok


def test_plain_mqtt_to_the_tls_port_says_to_add_tls(nb: Notebook,
                                                    tls_broker: dict[str, Any]) -> None:
    port = tls_broker["tls"]
    started = time.monotonic()
    cell = nb.run(f"%mqtt connect 127.0.0.1:{port}", timeout=30)
    text = said(cell)
    assert time.monotonic() - started < 5, text  # not the 10 s connect deadline
    assert text == (f"The broker at 127.0.0.1:{port} closed the connection without answering "
                    "the MQTT connect.\nIf it is the broker's TLS port (often 8883), add --tls.")


def test_a_port_that_never_answers_the_tls_hello_gives_up_within_the_deadline() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        conn = Connection("127.0.0.1", port, tls=True)
        started = time.monotonic()
        conn.start()
        with pytest.raises(MqttError) as failed:
            conn.wait_ready()
        took = time.monotonic() - started
    assert 4.5 < took < 7, took
    assert str(failed.value) == (f"127.0.0.1:{port} accepted the connection but did not complete "
                                 "a TLS handshake within 5 s: it is probably not a TLS port.")


def test_insecure_connects_and_says_plainly_what_it_gives_up(
        nb: Notebook, tls_broker: dict[str, Any]) -> None:
    port = tls_broker["tls"]
    cell = nb.run(f"%mqtt connect 127.0.0.1:{port} --insecure")
    assert cell.stdout == (
        f"Connected to 127.0.0.1:{port} with TLS, WITHOUT checking the broker's certificate: "
        "anyone between here and the broker could pose as it, read the messages. Use --cafile "
        "PATH with the broker's CA certificate instead.\n"), (cell.error, cell.stdout)
    both = nb.run(f"%mqtt connect 127.0.0.1:{port} --insecure --cafile {tls_broker['ca']}")
    assert said(both).startswith("--insecure and --cafile contradict each other")
    # The refused command left the working connection alone.
    pub = nb.run("%mqtt pub lesson/insecure ok")
    assert pub.stdout == "Published 2 bytes to lesson/insecure (QoS 0).\n", pub.error
    assert nb.run("%mqtt stop").ok


def test_help_explains_cafile_and_the_danger_of_insecure(nb: Notebook) -> None:
    cell = nb.run("%help mqtt")
    shown = "".join(m["content"]["data"]["text/plain"] for m in cell.of_type("display_data"))
    assert "--cafile PATH" in shown
    assert "anyone on the network between here and the broker can pose as it" in " ".join(
        shown.split()), shown
