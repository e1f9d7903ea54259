/work/main/target/debug/deps/synod-ab31c2a781a7ce0e.d: src/lib.rs src/paxos/mod.rs src/paxos/message.rs src/paxos/output.rs src/paxos/types.rs src/prng.rs src/runtime/mod.rs src/sim/mod.rs src/transport/mod.rs src/wal/mod.rs

/work/main/target/debug/deps/libsynod-ab31c2a781a7ce0e.rlib: src/lib.rs src/paxos/mod.rs src/paxos/message.rs src/paxos/output.rs src/paxos/types.rs src/prng.rs src/runtime/mod.rs src/sim/mod.rs src/transport/mod.rs src/wal/mod.rs

/work/main/target/debug/deps/libsynod-ab31c2a781a7ce0e.rmeta: src/lib.rs src/paxos/mod.rs src/paxos/message.rs src/paxos/output.rs src/paxos/types.rs src/prng.rs src/runtime/mod.rs src/sim/mod.rs src/transport/mod.rs src/wal/mod.rs

src/lib.rs:
src/paxos/mod.rs:
src/paxos/message.rs:
src/paxos/output.rs:
src/paxos/types.rs:
src/prng.rs:
src/runtime/mod.rs:
src/sim/mod.rs:
src/transport/mod.rs:
src/wal/mod.rs:
