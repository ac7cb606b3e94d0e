"""Fixtures for the interop tests: Confluent's Python client against Fanout's built-in registry
and the real local broker. The Rust side is the `fanout` binary (built by `make test` first)."""

import json
import os
import pathlib
import socket
import subprocess
import time
import urllib.request
import uuid

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BOOTSTRAP = os.environ.get("FANOUT_TEST_BOOTSTRAP", "127.0.0.1:9092")
SCHEMA_PATH = ROOT / "schemas" / "post_published.avsc"


def fanout_binary() -> pathlib.Path:
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    binary = target / "debug" / "fanout"
    if not binary.exists():
        pytest.fail(f"{binary} is missing: build it with `cargo build -p fanout-cli` (make test does)")
    return binary


def unique(prefix: str) -> str:
    return f"test-{prefix}-{uuid.uuid4().hex}"


def wait_until(condition, what: str, timeout: float = 30.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            result = condition()
            if result:
                return result
        except Exception as error:  # the condition is polled; remember why it is not yet true
            last = error
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last!r})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def fanout():
    binary = fanout_binary()

    def run(*args, check=True, input=None, timeout=120):
        result = subprocess.run(
            [str(binary), *args], capture_output=True, text=True, input=input, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"fanout {' '.join(args)} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    return run


@pytest.fixture(scope="session")
def registry_url():
    """`fanout registry serve` on a free port, with its own `_schemas` topic for this session."""
    port = free_port()
    topic = unique("schemas")
    process = subprocess.Popen(
        [str(fanout_binary()), "registry", "serve", "--listen", f"127.0.0.1:{port}",
         "--bootstrap", BOOTSTRAP, "--topic", topic],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"

    def answers():
        if process.poll() is not None:
            raise AssertionError(f"registry exited {process.returncode}: {process.stdout.read()}")
        with urllib.request.urlopen(f"{url}/subjects", timeout=2) as response:
            return response.status == 200 and json.load(response) is not None

    wait_until(answers, f"the registry at {url}")
    yield url
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
    delete_topics([topic])


def delete_groups(names):
    """Deletes test consumer groups; one that never existed is fine."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    for future in admin.delete_consumer_groups(names).values():
        try:
            future.result(timeout=30)
        except KafkaException as error:
            if error.args[0].code() != KafkaError.GROUP_ID_NOT_FOUND:
                raise


def delete_topics(names):
    """Deletes test topics; one already gone is fine, any other failure fails the session."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    for future in admin.delete_topics(names).values():
        try:
            future.result(timeout=30)
        except KafkaException as error:
            if error.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise


@pytest.fixture
def topic():
    from confluent_kafka.admin import AdminClient, NewTopic

    name = unique("interop")
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    for future in admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)]).values():
        future.result(timeout=30)
    yield name
    delete_topics([name])


@pytest.fixture(scope="session")
def post_schema() -> str:
    return SCHEMA_PATH.read_text()
