"""Fanout and Confluent's own client read each other's events and schemas.

Confluent's `AvroSerializer`/`AvroDeserializer` and `SchemaRegistryClient` (confluent-kafka from
PyPI) are the peer; the Rust side is the `fanout` binary, using Fanout's SDK and serde, against
Fanout's built-in registry and the real local broker."""

import json
import random

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from conftest import BOOTSTRAP, delete_groups, unique, wait_until

CATEGORIES = ["JOB", "HOUSING", "SECONDHAND", "OTHER"]


def sample_events(count: int):
    rng = random.Random(42)
    return [
        {
            "post_id": 1_000 + i,
            "user_id": rng.randint(1, 50),
            "category": CATEGORIES[i % 4],
            "city": rng.choice(["Berlin", "Lyon", "Osaka", "São Paulo"]),
            "title": f"post {i} ✓",
            "published_at": 1_764_000_000_000 + i,
        }
        for i in range(count)
    ]


def consume_all(topic: str, count: int, deserialize):
    group = unique("interop-reader")
    consumer = Consumer({
        "bootstrap.servers": BOOTSTRAP,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([topic])
    received = []
    try:
        def enough():
            message = consumer.poll(0.5)
            if message is not None:
                assert message.error() is None, message.error()
                received.append((message, deserialize(message)))
            return len(received) >= count

        wait_until(enough, f"{count} messages on {topic}", timeout=60, interval=0)
    finally:
        consumer.close()
        delete_groups([group])
    return received


def test_confluent_serializer_output_decodes_in_rust_into_the_typed_event(registry_url, topic, post_schema, fanout):
    client = SchemaRegistryClient({"url": registry_url})
    serializer = AvroSerializer(client, post_schema)
    producer = Producer({"bootstrap.servers": BOOTSTRAP})
    events = sample_events(40)
    for event in events:
        value = serializer(event, SerializationContext(topic, MessageField.VALUE))
        producer.produce(topic, key=str(event["post_id"]), value=value,
                         headers={"ce_id": f"py-{event['post_id']}", "ce_type": "post.published"})
    assert producer.flush(30) == 0

    result = fanout("tail", topic, "--from-beginning", "--max", str(len(events)), "--as", "post.published",
                    "--registry", registry_url, "--bootstrap", BOOTSTRAP)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == len(events), result.stdout
    decoded = {line["value"]["post_id"]: line for line in lines}
    for event in events:
        line = decoded[event["post_id"]]
        assert line["value"] == event
        assert line["key"] == str(event["post_id"])
        assert line["headers"]["ce_id"] == f"py-{event['post_id']}"


def test_fanout_publish_output_decodes_with_confluent_deserializer(registry_url, topic, fanout):
    events = sample_events(40)
    jsonl = "\n".join(json.dumps(e) for e in events)
    result = fanout("publish", "post.published", "--json", "-", "--topic", topic,
                    "--registry", registry_url, "--bootstrap", BOOTSTRAP, input=jsonl)
    deliveries = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert len(deliveries) == len(events)

    deserializer = AvroDeserializer(SchemaRegistryClient({"url": registry_url}))
    received = consume_all(
        topic, len(events),
        lambda m: deserializer(m.value(), SerializationContext(m.topic(), MessageField.VALUE)),
    )
    by_id = {value["post_id"]: (message, value) for message, value in received}
    assert sorted(by_id) == sorted(e["post_id"] for e in events)
    for event in events:
        message, value = by_id[event["post_id"]]
        # Confluent's deserializer turns timestamp-millis into an aware datetime.
        published_at = value.pop("published_at")
        assert round(published_at.timestamp() * 1000) == event["published_at"]
        assert value == {k: v for k, v in event.items() if k != "published_at"}
        headers = {k: v.decode() for k, v in message.headers()}
        assert headers["ce_type"] == "post.published"
        assert headers["ce_specversion"] == "1.0"
        assert headers["content-type"] == "application/avro"
        assert message.key().decode() == str(event["post_id"])
    event_ids = {dict(m.headers())["ce_id"] for m, _ in received}
    assert event_ids == {d["event_id"].encode() for d in deliveries}


def test_schema_registered_from_rust_is_fetched_by_id_in_python(registry_url, post_schema, fanout, tmp_path):
    subject = unique("rust-registered") + "-value"
    path = tmp_path / "schema.avsc"
    path.write_text(post_schema)
    result = fanout("schema", "register", "--registry", registry_url, "--subject", subject, str(path))
    schema_id = json.loads(result.stdout)["id"]

    fetched = SchemaRegistryClient({"url": registry_url}).get_schema(schema_id)
    assert json.loads(fetched.schema_str) == json.loads(post_schema)
    assert fetched.schema_type == "AVRO"


def test_schema_registered_from_python_is_fetched_by_id_in_rust(registry_url, fanout):
    subject = unique("py-registered") + "-value"
    schema = {"type": "record", "name": "Ping", "namespace": "test.interop",
              "fields": [{"name": "n", "type": "long"}, {"name": "note", "type": "string", "default": ""}]}
    schema_id = SchemaRegistryClient({"url": registry_url}).register_schema(subject, Schema(json.dumps(schema), "AVRO"))

    result = fanout("schema", "get", "--registry", registry_url, str(schema_id))
    assert json.loads(result.stdout) == schema


def test_incompatible_schema_is_rejected_with_409_for_both_clients(registry_url, fanout, tmp_path):
    subject = unique("compat") + "-value"
    v1 = {"type": "record", "name": "Thing", "fields": [{"name": "a", "type": "long"}]}
    # A new required field without a default: BACKWARD (the default) forbids it.
    v2 = {"type": "record", "name": "Thing",
          "fields": [{"name": "a", "type": "long"}, {"name": "b", "type": "string"}]}
    client = SchemaRegistryClient({"url": registry_url})
    client.register_schema(subject, Schema(json.dumps(v1), "AVRO"))

    with pytest.raises(SchemaRegistryError) as python_error:
        client.register_schema(subject, Schema(json.dumps(v2), "AVRO"))
    assert python_error.value.http_status_code == 409

    path = tmp_path / "v2.avsc"
    path.write_text(json.dumps(v2))
    result = fanout("schema", "register", "--registry", registry_url, "--subject", subject, str(path), check=False)
    assert result.returncode != 0
    assert "409" in result.stderr, result.stderr
    assert [1] == client.get_versions(subject)


def test_schema_java_avro_refuses_is_422_42201_for_confluent_client_on_register_lookup_and_compatibility(registry_url):
    from fastavro import parse_schema

    subject = unique("invalid-avro") + "-value"
    valid = {"type": "record", "name": "Keyed", "namespace": "test.interop",
             "fields": [{"name": "key", "type": {"type": "array", "items": "string"}}]}
    # The array's attributes beside the field instead of inside its "type": Java Avro, fastavro
    # and Confluent's registry refuse it.
    bare_array = {"type": "record", "name": "Keyed", "namespace": "test.interop",
                  "fields": [{"name": "key", "type": "array", "items": "string"}]}
    with pytest.raises(Exception):
        parse_schema(bare_array)

    client = SchemaRegistryClient({"url": registry_url})
    client.register_schema(subject, Schema(json.dumps(valid), "AVRO"))
    bad = Schema(json.dumps(bare_array), "AVRO")
    calls = {
        "register": lambda: client.register_schema(subject, bad),
        "lookup": lambda: client.lookup_schema(subject, bad),
        "compatibility with latest": lambda: client.test_compatibility(subject, bad),
        "compatibility with all": lambda: client.test_compatibility_all_versions(subject, bad),
    }
    for endpoint, call in calls.items():
        with pytest.raises(SchemaRegistryError) as refused:
            call()
        assert (refused.value.http_status_code, refused.value.error_code) == (422, 42201), endpoint
        assert '"array" is not a defined name' in refused.value.error_message, endpoint
        assert refused.value.error_message.count("Invalid schema") == 1, refused.value.error_message
    assert client.get_versions(subject) == [1]
