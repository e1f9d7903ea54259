//! Connections that must be refused, whole and with a named reason: bad handshakes and
//! frames, forged senders, wrong or missing keys, pending-handshake eviction, layout
//! mismatches; and the rate limit of their log lines.

use super::*;

// Goal: a connection with a bad handshake is closed with a named reason and nothing
// it sent is delivered; after a good handshake, an oversized header or garbage
// closes it, and the good frames sent before are delivered.
// Method: a raw client sends crafted bytes to a Net; check closes, counters, inbound.
#[test]
fn bad_handshakes_and_bad_frames_close_the_connection() {
    run_local(async {
        let addrs = free_addrs(&[1, 2, 3]);
        let net = start(config(1, &addrs)).await;
        let server = net.local_addr();
        let good = frame(&FrameBody::MessageBatch(vec![prepare(2, 1, 1)]));
        let cases: [(Vec<u8>, &str); 6] = [
            (
                hello_frame(Handshake {
                    cluster: 78,
                    ..handshake_of(2, &addrs)
                }),
                "cluster mismatch",
            ),
            (hello(&addrs, 9, None), "unknown node"),
            (hello(&addrs, 1, None), "own node id"),
            (
                hello_frame(Handshake {
                    protocol_version: PROTOCOL_VERSION + 1,
                    ..handshake_of(2, &addrs)
                }),
                "protocol version mismatch",
            ),
            (
                hello_frame(Handshake {
                    shard: 4,
                    ..handshake_of(2, &addrs)
                }),
                "shard mismatch",
            ),
            (good.clone(), "handshake not first"),
        ];
        for (first, reason) in cases {
            let bytes = [first, good.clone()].concat();
            assert!(raw_session(server, &bytes).await, "{reason}: not closed");
            assert_eq!(closes(&net, reason), 1, "{reason}: {:?}", net.counters());
        }
        // A size header above the limit, during the handshake and after it.
        assert!(raw_session(server, &u32::MAX.to_le_bytes()).await);
        let mut bytes = hello(&addrs, 2, None);
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(raw_session(server, &bytes).await);
        assert_eq!(closes(&net, "oversized frame"), 2);
        let mut inbound = Vec::new();
        net.drain_inbound(&mut inbound);
        assert!(inbound.is_empty(), "{inbound:?}");

        // Two good frames, then garbage: the good ones arrive, then the close.
        let heartbeats = frame(&FrameBody::HeartbeatBatch(HeartbeatBatch {
            from: NodeId(2),
            to: NodeId(1),
            heartbeats: vec![GroupHeartbeat {
                group: GroupId(4),
                ballot: ballot(2),
                chosen_through: Instance(9),
                sent_at: Nanos(1),
                checksum_through: Instance(0),
                checksum: 0,
            }],
        }));
        let mut garbage = Vec::new();
        append_frame(&[0xAB; 64], usize::MAX, &mut garbage).expect("frame");
        let bytes = [hello(&addrs, 2, None), good, heartbeats, garbage].concat();
        assert!(raw_session(server, &bytes).await);
        assert_eq!(closes(&net, "malformed frame"), 1);
        net.drain_inbound(&mut inbound);
        assert_eq!(inbound.len(), 2, "{inbound:?}");
        assert_eq!(inbound[0], prepare(2, 1, 1));
        assert!(matches!(inbound[1].body, MessageBody::Heartbeat { .. }));
        assert_eq!(inbound[1].group, GroupId(4));

        // A catch-up stream is not handled yet.
        let stream = frame(&FrameBody::CatchUpStream(transport::CatchUpStream {
            group: GroupId(1),
            first_lsn: crate::paxos::Lsn(1),
            records: Bytes::new(),
            credit_size: 0,
            salt: 0,
        }));
        let bytes = [hello(&addrs, 2, None), stream].concat();
        assert!(raw_session(server, &bytes).await);
        assert_eq!(closes(&net, "unsupported frame"), 1);
        net.drain_inbound(&mut inbound);
        assert_eq!(inbound.len(), 2);
        net.close().await;
    })
    .expect("executor");
}

// Goal: a silent client is closed after handshake_timeout.
// Method: connect, send nothing, wait for the close and its counter.
#[test]
fn silent_client_times_out() {
    run_local(async {
        let addrs = free_addrs(&[1, 2]);
        let mut config = config(1, &addrs);
        config.handshake_timeout = Duration::from_millis(200);
        let net = start(config).await;
        assert!(raw_session(net.local_addr(), &[]).await);
        assert_eq!(closes(&net, "handshake timeout"), 1);
        net.close().await;
    })
    .expect("executor");
}

// Goal: a frame whose sender or receiver is not the handshaken pair is refused
// whole, even when its other messages are genuine.
// Method: handshake as node 2, send batches with a forged `from` or `to`.
#[test]
fn forged_sender_is_refused() {
    run_local(async {
        let addrs = free_addrs(&[1, 2, 3]);
        let net = start(config(1, &addrs)).await;
        let forged_batches = [
            vec![prepare(2, 1, 1), prepare(3, 1, 2)],
            vec![prepare(2, 5, 1)],
        ];
        for (i, batch) in forged_batches.into_iter().enumerate() {
            let bytes = [
                hello(&addrs, 2, None),
                frame(&FrameBody::MessageBatch(batch)),
            ]
            .concat();
            assert!(raw_session(net.local_addr(), &bytes).await);
            assert_eq!(closes(&net, "forged sender/receiver"), i as u64 + 1);
        }
        let acks = frame(&FrameBody::HeartbeatAckBatch(HeartbeatAckBatch {
            from: NodeId(3),
            to: NodeId(1),
            acks: Vec::new(),
        }));
        let bytes = [hello(&addrs, 2, None), acks].concat();
        assert!(raw_session(net.local_addr(), &bytes).await);
        assert_eq!(closes(&net, "forged sender/receiver"), 3);
        let mut inbound = Vec::new();
        net.drain_inbound(&mut inbound);
        assert!(inbound.is_empty(), "{inbound:?}");
        assert_eq!(net.counters().messages_received, 0);
        net.close().await;
    })
    .expect("executor");
}

// Goal: two nodes with the same key link up and deliver; with different keys, or a
// key on one side only, nothing is delivered and the refusals are named.
// Method: pairs of Nets with (k, k), (k, k'), (k, none); wait, check counters.
#[test]
fn handshake_needs_the_same_key_on_both_sides() {
    run_local(async {
        let key = AuthKey::generate().expect("key");
        let other = AuthKey::generate().expect("key");
        let addrs = free_addrs(&[1, 2]);
        let a = start(keyed(config(1, &addrs), &key)).await;
        let b = start(keyed(config(2, &addrs), &key)).await;
        link_delivers(&a, &b, 1).await;
        link_delivers(&b, &a, 2).await;
        a.close().await;
        b.close().await;

        for b_key in [Some(other), None] {
            let addrs = free_addrs(&[1, 2]);
            let a = start(keyed(config(1, &addrs), &key)).await;
            let mut config_b = config(2, &addrs);
            config_b.key = b_key.clone();
            let b = start(config_b).await;
            let reason = if b_key.is_some() {
                "bad proof"
            } else {
                "authentication mismatch"
            };
            wait_for("refusals on both sides", || {
                closes(&a, reason) >= 2 && closes(&b, reason) >= 2
            })
            .await;
            for _ in 0..10 {
                a.send(NodeId(2), &[prepare(1, 2, 1)]);
                b.send(NodeId(1), &[prepare(2, 1, 1)]);
                sleep(Duration::from_millis(10)).await;
            }
            for net in [&a, &b] {
                let c = net.counters();
                assert_eq!(c.connects_inbound + c.connects_outbound, 0, "{c:?}");
                assert_eq!(c.messages_received, 0, "{c:?}");
            }
            a.close().await;
            b.close().await;
        }
    })
    .expect("executor");
}

// Goal: a handshake that claims a live peer's node id but cannot prove the key is
// refused, replaces nothing, and the real link keeps delivering.
// Method: keyed nodes 1 and 2 link up; raw connections claim node 2 to node 1 and
// send a random proof, a message batch instead of a proof, or no proof; node 2's
// messages still arrive over the one original connection.
#[test]
fn forged_handshake_for_a_live_node_is_refused() {
    run_local(async {
        let key = AuthKey::generate().expect("key");
        let addrs = free_addrs(&[1, 2]);
        let mut config_a = keyed(config(1, &addrs), &key);
        config_a.handshake_timeout = Duration::from_millis(300);
        let a = start(config_a).await;
        let b = start(keyed(config(2, &addrs), &key)).await;
        link_delivers(&b, &a, 1).await;
        // Sent after each forged handshake: must never be delivered.
        let smuggled = frame(&FrameBody::MessageBatch(vec![prepare(2, 1, 66)]));
        let forgeries: [Vec<u8>; 3] = [
            frame(&FrameBody::HandshakeProof(HandshakeProof {
                proof: [9; 32],
            })),
            smuggled.clone(),
            // No proof at all: the handshake times out.
            Vec::new(),
        ];
        for forged in forgeries {
            let mut bytes = hello(&addrs, 2, Some([5; 16]));
            if !forged.is_empty() {
                bytes.extend(forged);
                bytes.extend_from_slice(&smuggled);
            }
            assert!(raw_session(a.local_addr(), &bytes).await);
            link_delivers(&b, &a, 2).await;
        }
        // A hello without a nonce to a keyed node.
        let bytes = [hello(&addrs, 2, None), smuggled].concat();
        assert!(raw_session(a.local_addr(), &bytes).await);
        link_delivers(&b, &a, 3).await;
        let c = a.counters();
        assert_eq!(closes(&a, "bad proof"), 2, "{c:?}");
        assert_eq!(closes(&a, "handshake timeout"), 1, "{c:?}");
        assert_eq!(closes(&a, "authentication mismatch"), 1, "{c:?}");
        assert_eq!(closes(&a, "replaced"), 0, "{c:?}");
        assert_eq!(c.connects_inbound, 1, "{c:?}");
        let mut inbound = Vec::new();
        a.drain_inbound(&mut inbound);
        assert!(!inbound.contains(&prepare(2, 1, 66)), "{inbound:?}");
        a.close().await;
        b.close().await;
    })
    .expect("executor");
}

// Goal: when pending_max handshakes are pending, a new connection evicts the
// oldest, so idle connections cannot lock out a real peer; one source address
// cannot hold more than pending_per_source_max.
// Method: node 1 with pending_max 4 and 2 per source; idle connections from
// 127.0.0.2..=5 fill it; a 5th evicts the first; a 3rd from one source is closed
// at once; then the real node 2 starts and its link delivers.
#[test]
fn oldest_pending_handshake_is_evicted() {
    run_local(async {
        let key = AuthKey::generate().expect("key");
        let addrs = free_addrs(&[1, 2]);
        let mut config_a = keyed(config(1, &addrs), &key);
        config_a.pending_max = 4;
        config_a.pending_per_source_max = 2;
        config_a.handshake_timeout = Duration::from_secs(30);
        let a = start(config_a).await;
        let server = a.local_addr();
        let mut idle: Vec<std::net::TcpStream> =
            (2..=5).map(|i| attacker([127, 0, 0, i], server)).collect();
        wait_for("four pending", || a.inner.pending.borrow().len() == 4).await;
        let mut fifth = attacker([127, 0, 0, 6], server);
        assert!(std_closed(&mut idle[0], Duration::from_secs(3)).await);
        assert_eq!(closes(&a, "evicted"), 1);
        assert!(!std_closed(&mut idle[1], Duration::from_millis(100)).await);
        assert!(!std_closed(&mut fifth, Duration::from_millis(10)).await);

        let _second = attacker([127, 0, 0, 6], server);
        let mut third = attacker([127, 0, 0, 6], server);
        assert!(std_closed(&mut third, Duration::from_secs(3)).await);
        assert_eq!(closes(&a, "too many pending from source"), 1);

        let b = start(keyed(config(2, &addrs), &key)).await;
        link_delivers(&b, &a, 1).await;
        assert_eq!(a.counters().connects_inbound, 1);
        drop(idle);
        a.close().await;
        b.close().await;
    })
    .expect("executor");
}

// Goal: 300 refused connections write a bounded number of log lines, every close
// still counted (the budget itself: runtime::log_budget's tests).
// Method: 300 handshakes with a wrong cluster id; check the counters.
#[test]
fn close_logging_is_rate_limited() {
    run_local(async {
        let addrs = free_addrs(&[1, 2]);
        let net = start(config(1, &addrs)).await;
        for _ in 0..300 {
            let bytes = hello_frame(Handshake {
                cluster: 78,
                ..handshake_of(2, &addrs)
            });
            let mut stream = TcpStream::connect(net.local_addr()).await.expect("connect");
            stream.write_all(&bytes).await.expect("write");
            drop(stream);
        }
        wait_for("300 refusals", || closes(&net, "cluster mismatch") == 300).await;
        let c = net.counters();
        // The dialer toward the absent node 2 adds its own "connect failed" lines,
        // under the same per-reason budget.
        let reasons = c.closes.len() as u64;
        assert!(
            c.close_lines_logged <= u64::from(CLOSE_LOG_BURST) * reasons,
            "{c:?}"
        );
        assert!(
            c.close_lines_logged + c.close_lines_suppressed >= 300,
            "{c:?}"
        );
        net.close().await;
    })
    .expect("executor");
}

// Goal: two keyed nodes whose shard counts differ never link up, and both count
// the refusal (the details: handshake's tests).
// Method: start both, wait for the refusals, check no link came up.
#[test]
fn shard_count_mismatch_is_refused_on_both_sides() {
    run_local(async {
        let addrs = free_addrs(&[1, 2]);
        let key = AuthKey::generate().expect("key");
        let a = start(keyed(config(1, &addrs), &key)).await;
        let mut config_b = keyed(config(2, &addrs), &key);
        config_b.shards = 5;
        let b = start(config_b).await;
        wait_for("refusals on both sides", || {
            closes(&a, "shard count mismatch") >= 1 && closes(&b, "shard count mismatch") >= 1
        })
        .await;
        for net in [&a, &b] {
            let c = net.counters();
            assert_eq!(c.connects_inbound + c.connects_outbound, 0, "{c:?}");
        }
        a.close().await;
        b.close().await;
    })
    .expect("executor");
}
