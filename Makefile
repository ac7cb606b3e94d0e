# The two commands of README.md's quickstart, and the pieces they are made of.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

VENV := .venv
PYTHON := $(VENV)/bin/python

.PHONY: demo test stack lint unit-and-integration interop leftovers-snapshot leftovers-check scheduler-long faults fuzz

# Where cargo puts what it builds.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)

## demo: bring up the local stack, build (showing cargo's progress), then run the main job end to
## end. Prometheus (from scripts/stack) scrapes every service that writes a target file there; the
## log lines of the services and the Kafka client go to a file under .stack/demo, which the demo
## names.
demo: stack
	cargo build --release -p fanout-cli --locked
	FANOUT_PROMETHEUS_TARGETS_DIR=$(CURDIR)/.stack/prometheus/targets $(TARGET_DIR)/release/fanout demo \
		--log-dir $(CURDIR)/.stack/demo

## test: the whole suite: stack, formatting, lints, unit, integration and interop tests; then a
## check that the tests deleted every topic, group and database they created.
test: stack lint leftovers-snapshot unit-and-integration interop leftovers-check

stack:
	scripts/stack up all

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cargo clippy -p fanout-tests --features faults --all-targets --locked -- -D warnings

leftovers-snapshot: stack
	scripts/stack leftovers snapshot

leftovers-check:
	scripts/stack leftovers check

## unit-and-integration: the gateway's tests run Python peers (standardwebhooks, cryptography)
## from the virtualenv, so it is made first.
unit-and-integration: $(VENV)/.installed
	cargo test --workspace --locked

## interop: Confluent's own Python client against our binary, registry and the real broker.
interop: $(VENV)/.installed
	cargo build -p fanout-cli --locked
	$(PYTHON) -m pytest tests/interop -q -p no:cacheprovider

$(VENV)/.installed: tests/interop/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r tests/interop/requirements.txt
	touch $@

## scheduler-long: the scheduler's kill tests with 100,000 pending entries (due at 2,000 a second),
## one at a time; about five minutes. Not part of `make test`.
scheduler-long: stack
	FANOUT_TEST_SCHEDULED=100000 cargo test -p fanout-scheduler --locked --test kill -- --test-threads=1

## fuzz: every fuzz test with FUZZ_COUNT cases each (default 200,000; `make test` runs them with a
## few thousand): the registry's request bodies and schema parsing, the config loader, the
## gateway's verifiers and config; the wire decoder, whose cases are cheaper, with
## DECODER_FUZZ_COUNT (default 10,000,000; `make test` runs 1,000,000). Release builds, since the
## counts are large. Needs no stack. Not part of `make test`.
FUZZ_COUNT ?= 200000
DECODER_FUZZ_COUNT ?= 10000000
fuzz:
	FANOUT_FUZZ_COUNT=$(FUZZ_COUNT) cargo test --release --locked -p fanout-registry-server --lib fuzz::
	FANOUT_FUZZ_COUNT=$(FUZZ_COUNT) cargo test --release --locked -p fanout-rewards --test config_fuzz
	FANOUT_FUZZ_COUNT=$(FUZZ_COUNT) cargo test --release --locked -p fanout-gateway --test config a_damaged_gateway_file
	FANOUT_FUZZ_COUNT=$(FUZZ_COUNT) cargo test --release --locked -p fanout-gateway --test verify fuzz::
	FANOUT_FUZZ_COUNT=$(DECODER_FUZZ_COUNT) cargo test --release --locked -p fanout-schema-registry --lib a_million_random_inputs_never_panic

## faults: the fault suite (tests/faults) on the three-node cluster of `scripts/stack up kafka
## --brokers 3`, with Toxiproxy (`scripts/stack up toxiproxy`, built once) between the network
## tests' clients and the nodes; it starts and stops both: leader kills while publishing and
## consuming, consumer chaos, PostgreSQL restarted, the registry stopped, a leader blackholed, and
## latency and connection resets under a consumer. It kills shared parts of the stack, so it is
## not part of `make test`; FAULT_RUNS=5 runs the whole suite five times, and
## FANOUT_TEST_CLUSTER_SASL=1 runs it with every client logging in over SASL/SCRAM-SHA-512 (the
## network tests' clients excepted: the proxied listener is plaintext). About seven minutes a run.
FAULT_RUNS ?= 1
faults: stack
	cargo build -p fanout-rewards -p fanout-cli --locked
	cargo test -p fanout-tests --features faults --test faults --locked --no-run
	scripts/stack up kafka --brokers 3
	scripts/stack up toxiproxy
	rc=0; for run in $$(seq 1 $(FAULT_RUNS)); do \
		echo "faults: run $$run of $(FAULT_RUNS)"; \
		cargo test -p fanout-tests --features faults --test faults --locked -- --test-threads=1 --nocapture \
			2>&1 | tee $(TARGET_DIR)/faults-run-$$run.log | grep -E '^(cluster:|verdict|test |test result)' || rc=1; \
		grep -q '^test result: ok' $(TARGET_DIR)/faults-run-$$run.log || rc=1; \
	done; scripts/stack down toxiproxy; scripts/stack down kafka --brokers 3; exit $$rc
