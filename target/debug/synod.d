/work/main/target/debug/synod: /work/main/src/lib.rs /work/main/src/main.rs /work/main/src/paxos/message.rs /work/main/src/paxos/mod.rs /work/main/src/paxos/output.rs /work/main/src/paxos/types.rs
