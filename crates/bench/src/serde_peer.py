"""The Python peer of `fanout bench`'s serde scenario: Confluent's own AvroSerializer and
AvroDeserializer (confluent-kafka[avro,schemaregistry]) on the same event, the same schema and the
same registry as the Rust side, schema cached after the first call.

The bench starts this once and drives it over stdin, one command per repetition, so Python's
start-up stays out of the figures and Rust and Python runs alternate:

    encode N   ->  {"op": "encode", "n": N, "seconds": S}
    decode N   ->  {"op": "decode", "n": N, "seconds": S}

On start it prints {"ready": true, ...} after one serialize and one deserialize (registering and
caching the schema), including whether its bytes equal the Rust encoder's.
"""

import argparse
import json
import sys
import time

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--registry", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--schema", required=True, help="path of the .avsc file")
    parser.add_argument("--event", required=True, help="the event as JSON")
    parser.add_argument("--payload", required=True, help="the Rust encoder's payload, hex")
    args = parser.parse_args()

    with open(args.schema, encoding="utf-8") as f:
        schema = f.read()
    client = SchemaRegistryClient({"url": args.registry})
    serializer = AvroSerializer(client, schema, conf={"auto.register.schemas": True})
    deserializer = AvroDeserializer(client, schema)
    context = SerializationContext(args.topic, MessageField.VALUE)
    event = json.loads(args.event)
    rust_payload = bytes.fromhex(args.payload)

    ours = serializer(event, context)
    decoded = deserializer(rust_payload, context)
    print(
        json.dumps(
            {
                "ready": True,
                "same_bytes": ours == rust_payload,
                "decodes_rust_payload": decoded["post_id"] == event["post_id"]
                and decoded["title"] == event["title"],
            }
        ),
        flush=True,
    )

    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            break
        op, n = words[0], int(words[1])
        if op == "encode":
            start = time.perf_counter()
            for _ in range(n):
                serializer(event, context)
            seconds = time.perf_counter() - start
        elif op == "decode":
            start = time.perf_counter()
            for _ in range(n):
                deserializer(rust_payload, context)
            seconds = time.perf_counter() - start
        else:
            print(json.dumps({"error": f"unknown command {op!r}"}), flush=True)
            continue
        print(json.dumps({"op": op, "n": n, "seconds": seconds}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
