//! The fault suite (`make faults`): Fanout's guarantees on the three-node cluster of
//! `scripts/stack up kafka --brokers 3` (replication 3, `min.insync.replicas=2`) while something
//! is killed, stopped or restarted, or while the network between a client and the cluster is
//! slowed, blackholed or reset (`network`, through Toxiproxy). Each test brings the cluster up
//! itself (restarting any node a previous test killed), has a bounded duration, and prints its
//! verdict with the counts that RELIABILITY.md reports. The tests share the cluster and the
//! stack's PostgreSQL and kill parts of them, so they run one at a time (`--test-threads=1`),
//! never beside `make test`.

mod common;

mod chaos;
mod consumers;
mod network;
mod postgres;
mod publish;
mod registry;
mod registry_leader;
