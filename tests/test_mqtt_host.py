"""The host half of %mqtt without a board: topic rules, the broker's set-up and its refusals,
against a real mosquitto on 127.0.0.1 (own config, free port, stopped at the end)."""

from __future__ import annotations

import pytest

from mpkernel.host.mqtt import broker as brokers
from mpkernel.host.mqtt.client import Connection, MqttError, check_topic


@pytest.mark.parametrize(("topic", "wildcards", "says"), [
    ("", False, "The topic to publish to is empty."),
    ("a/+", False, "The topic 'a/+' contains a wildcard ('+' or '#')"),
    ("a/#/b", True, "The filter 'a/#/b' uses a wildcard inside a level"),
    ("a/b+", True, "The filter 'a/b+' uses a wildcard inside a level"),
])
def test_invalid_topics_are_refused_before_sending(topic: str, wildcards: bool, says: str
                                                   ) -> None:
    with pytest.raises(MqttError) as refused:
        check_topic(topic, wildcards=wildcards)
    assert str(refused.value).startswith(says)


def test_valid_filters_pass() -> None:
    for topic in ("a/+/c", "a/#", "#", "+", "sensors/temp"):
        check_topic(topic, wildcards=True)


def test_broker_config_refuses_anonymous_and_wrong_passwords(local_broker: brokers.Broker
                                                             ) -> None:
    conf = (local_broker.folder + "/mosquitto.conf")
    text = open(conf).read()
    assert f"listener {local_broker.port} 127.0.0.1\n" in text
    assert "allow_anonymous false\n" in text
    anonymous = Connection("127.0.0.1", local_broker.port)
    anonymous.start()
    with pytest.raises(MqttError) as refused:
        anonymous.wait_ready()
    assert refused.value.code == 5
    good = Connection("127.0.0.1", local_broker.port, user=local_broker.user,
                      password=local_broker.password)
    good.start()
    good.wait_ready()
    good.close()
    # The password is not in what a notebook would show of the broker.
    assert local_broker.password not in repr(local_broker)


def test_a_taken_port_is_named(local_broker: brokers.Broker) -> None:
    with pytest.raises(MqttError) as taken:
        brokers.start_broker(port=local_broker.port, bind="127.0.0.1")
    assert f"Port {local_broker.port} is taken" in taken.value.hint


def test_missing_mosquitto_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(brokers.shutil, "which", lambda name, path=None: None)
    with pytest.raises(MqttError) as missing:
        brokers.start_broker(port=0, bind="127.0.0.1")
    assert str(missing.value) == "mosquitto is not installed on this computer."
    assert missing.value.hint.startswith("Install it: sudo apt-get install mosquitto")
