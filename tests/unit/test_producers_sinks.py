"""The file sink and the client settings; KafkaSink is tested against a real broker (integration)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from detector.engine.records import Label, Transaction, decode_label
from detector.kafka_config import client_config, parse_settings
from producers.sinks import JsonlSink

TX = Transaction("t1", 1_767_225_600.0, "c1", "m1", 12.5, "EUR")
LABEL = Label("t1", "c1", True, 1_767_312_000.0)


def test_jsonl_sink_writes_one_file_per_topic(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path / "out", "tx", "lb")
    sink.send_transaction(TX)
    sink.send_label(LABEL)
    sink.send_label(LABEL)
    report = sink.close()
    assert report.delivered == {"tx": 1, "lb": 2}
    lines = (tmp_path / "out" / "lb.jsonl").read_bytes().splitlines()
    assert [decode_label(line) for line in lines] == [LABEL, LABEL]
    assert orjson.loads((tmp_path / "out" / "tx.jsonl").read_bytes()) == TX.to_dict()


def test_client_config_takes_security_from_the_environment_and_lets_overrides_win() -> None:
    environ = {
        "KAFKA_BOOTSTRAP_SERVERS": "env:9092",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "user",
        "KAFKA_SASL_PASSWORD": "secret",
        "KAFKA_SSL_CA_LOCATION": "/etc/ca.pem",
        "KAFKA_UNRELATED": "x",
    }
    config = client_config(None, {"sasl.username": "other"}, environ)
    assert config == {
        "bootstrap.servers": "env:9092",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "other",
        "sasl.password": "secret",
        "ssl.ca.location": "/etc/ca.pem",
    }
    assert client_config("cli:9092", environ=environ)["bootstrap.servers"] == "cli:9092"
    assert client_config(environ={}) == {"bootstrap.servers": "localhost:9092"}


def test_settings_are_key_value_pairs() -> None:
    assert parse_settings(["acks=all", "sasl.password=a=b"]) == {"acks": "all", "sasl.password": "a=b"}
    with pytest.raises(ValueError, match="key=value"):
        parse_settings(["acks"])
