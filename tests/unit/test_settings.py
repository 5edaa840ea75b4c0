"""Settings come from CRM_* environment variables and reach the Kafka clients."""

from __future__ import annotations

import pytest

from stream.settings import Settings, kafka_client_config


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Verify that CRM_ variables configure Kafka, Redis and partitions."""
    monkeypatch.setenv("CRM_KAFKA_BOOTSTRAP", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setenv("CRM_REDIS_URL", "rediss://:secret@redis:6380/1")
    monkeypatch.setenv("CRM_PARTITIONS", "12")
    settings = Settings()
    assert settings.kafka_bootstrap == "kafka-1:9092,kafka-2:9092"
    assert settings.redis_url == "rediss://:secret@redis:6380/1"
    assert settings.partitions == 12


def test_sasl_and_tls_options_pass_through_to_librdkafka(monkeypatch: pytest.MonkeyPatch) -> None:
    """Verify that SASL/TLS settings become the matching confluent-kafka options."""
    monkeypatch.setenv("CRM_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("CRM_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("CRM_KAFKA_SASL_USERNAME", "crm")
    monkeypatch.setenv("CRM_KAFKA_SASL_PASSWORD", "s3cret")
    monkeypatch.setenv("CRM_KAFKA_SSL_CAFILE", "/etc/ca.pem")
    config = kafka_client_config(Settings())
    assert config["security.protocol"] == "sasl_ssl"
    assert config["sasl.mechanism"] == "SCRAM-SHA-512"
    assert (config["sasl.username"], config["sasl.password"]) == ("crm", "s3cret")
    assert config["ssl.ca.location"] == "/etc/ca.pem"
    assert "s3cret" not in repr(Settings())


def test_invalid_settings_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Verify that a nonsensical partition count fails loudly instead of being used."""
    monkeypatch.setenv("CRM_PARTITIONS", "0")
    with pytest.raises(ValueError, match="partitions"):
        Settings()


def test_topic_prefix_applies_to_every_topic() -> None:
    """Verify that a topic prefix (e.g. per environment) is prepended to topic names."""
    assert Settings(topic_prefix="staging.").topic("shop.clicks") == "staging.shop.clicks"
    assert Settings().topic("crm.alerts") == "crm.alerts"


def test_settings_survive_the_trip_through_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Verify that to_env() reproduces the same settings in a child process's environment."""
    original = Settings(kafka_bootstrap="k:1", partitions=4, topic_prefix="t1.",
                        kafka_sasl_password="pw", session_timeout_s=6.5)
    for name, value in original.to_env().items():
        monkeypatch.setenv(name, value)
    assert Settings() == original


def test_every_variable_is_documented() -> None:
    """Verify that docs/configuration.md names every CRM_ variable the deployables read
    (a table cell may abbreviate siblings, e.g. ``CRM_KAFKA_SSL_CAFILE, _CERTFILE``)."""
    import re
    from pathlib import Path

    from api.settings import ApiSettings

    text = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    cells = [cell for line in text.splitlines() if line.startswith("| `CRM_")
             for cell in [line.split("|")[1]]]
    documented: set[str] = set()
    for cell in cells:
        names = re.findall(r"`(CRM_\w+|_\w+)`", cell)
        stem = ""
        for name in names:
            if name.startswith("CRM_"):
                documented.add(name)
                stem = name
            else:  # a sibling: the last full name's prefix up to its last known part
                documented.update(stem[:i] + name for i in range(len(stem))
                                  if stem[i] == "_")
    fields = {f"CRM_{name.upper()}" for model in (Settings, ApiSettings)
              for name in model.model_fields}
    assert sorted(fields - documented) == []
