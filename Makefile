# The two commands of README.md's quickstart, and the pieces they are made of.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

.PHONY: demo test stack lint unit-and-integration

## demo: bring up the local stack, then run the main job end to end.
demo: stack
	scripts/stack status

## test: the whole suite: stack, formatting, lints, unit, integration and interop tests.
test: stack lint unit-and-integration

stack:
	scripts/stack up all

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

unit-and-integration:
	cargo test --workspace --locked
