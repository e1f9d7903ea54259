//! Links that work: messages and batches delivered in order, split by every bound;
//! bounded buffers toward a stalled peer; reconnection; backpressure; replacement.

use super::*;

// Goal: three shards exchange message batches and heartbeat batches intact, in order
// per sender, including frames split by messages_max, heartbeats_max and size.
// Method: start three Nets on 127.0.0.1, wait for all links, send mixed calls from
// every node to every other, drain until every expected message arrived, compare.
#[test]
fn three_nodes_exchange_messages_in_order() {
    run_local(async {
        let addrs = free_addrs(&[1, 2, 3]);
        let mut nets = BTreeMap::new();
        let wakes = Rc::new(Cell::new(0_u64));
        for node in [1_u32, 2, 3] {
            let mut config = config(node, &addrs);
            config.limits.messages_max = 3;
            config.limits.heartbeats_max = 4;
            config.limits.frame_size_max = 8192;
            let wakes = Rc::clone(&wakes);
            let wake: Rc<dyn Fn()> = Rc::new(move || wakes.set(wakes.get() + 1));
            let net = Net::start(config, wake).await.expect("start");
            nets.insert(node, net);
        }
        wait_for("every link up", || {
            nets.values().all(|net| {
                let c = net.counters();
                c.connects_outbound == 2 && c.connects_inbound == 2
            })
        })
        .await;

        let value = Bytes::from(vec![7_u8; 1000]);
        let mut expected: BTreeMap<(u32, u32), Vec<Message>> = BTreeMap::new();
        for call in 0..20_u64 {
            for from in [1_u32, 2, 3] {
                for to in [1_u32, 2, 3] {
                    if from == to {
                        continue;
                    }
                    let mut batched = Vec::new();
                    let mut heartbeats = Vec::new();
                    let mut acks = Vec::new();
                    for i in 0..10 {
                        let seq = call * 100 + i;
                        batched.push(accept(from, to, seq, &value));
                        batched.push(prepare(from, to, seq));
                        heartbeats.push(heartbeat(from, to, seq));
                        acks.push(heartbeat_ack(from, to, seq));
                    }
                    // Interleaved on the way in; grouped by frame kind on the way out.
                    let mixed: Vec<Message> = (0..10)
                        .flat_map(|i| {
                            [
                                batched[2 * i].clone(),
                                heartbeats[i].clone(),
                                batched[2 * i + 1].clone(),
                                acks[i].clone(),
                            ]
                        })
                        .collect();
                    nets[&from].send(NodeId(to), &mixed);
                    let list = expected.entry((from, to)).or_default();
                    list.extend(batched);
                    list.extend(heartbeats);
                    list.extend(acks);
                }
            }
            yield_now().await;
        }

        let mut received: BTreeMap<u32, Vec<Message>> = BTreeMap::new();
        let total: usize = expected.values().map(Vec::len).sum();
        wait_for("every message delivered", || {
            for (node, net) in &nets {
                net.drain_inbound(received.entry(*node).or_default());
            }
            received.values().map(Vec::len).sum::<usize>() >= total
        })
        .await;
        for ((from, to), list) in &expected {
            let got: Vec<Message> = received[to]
                .iter()
                .filter(|m| m.from.0 == *from)
                .cloned()
                .collect();
            assert!(
                got == *list,
                "from {from} to {to}: {} of {}",
                got.len(),
                list.len()
            );
        }
        assert!(wakes.get() > 0);
        for net in nets.values() {
            let c = net.counters();
            assert_eq!(c.messages_sent, 2 * 20 * 40, "{c:?}");
            assert_eq!(c.messages_received, 2 * 20 * 40, "{c:?}");
            assert_eq!(c.messages_dropped_disconnected, 0, "{c:?}");
            assert!(c.closes.is_empty(), "{c:?}");
        }

        // A message that alone exceeds frame_size_max is dropped and counted.
        let huge = Bytes::from(vec![1_u8; 10_000]);
        nets[&1].send(NodeId(2), &[accept(1, 2, 1, &huge), prepare(1, 2, 2)]);
        assert_eq!(nets[&1].counters().messages_dropped_too_large, 1);
        assert_eq!(wait_inbound(&nets[&2]).await, vec![prepare(1, 2, 2)]);
        for (_, net) in nets {
            net.close().await;
        }
    })
    .expect("executor");
}

// Goal: a peer that never reads cannot make the sender's buffer grow past
// peer_queue_size_max plus one frame; the excess is dropped and counted.
// Method: a raw listener handshakes as node 2 and then stalls; send 100 MB to it,
// checking the buffer bound after every call; account for every message.
#[test]
fn stalled_peer_buffer_is_bounded() {
    run_local(async {
        let addrs = free_addrs(&[1, 2]);
        let stalled = TcpListener::bind(addrs[&NodeId(2)]).expect("bind");
        let reply = hello(&addrs, 2, None);
        let peer = glommio::spawn_local(async move {
            let mut stream = stalled.accept().await.expect("accept");
            let mut header = [0_u8; 4];
            stream.read_exact(&mut header).await.expect("header");
            let mut hello = vec![0_u8; u32::from_le_bytes(header) as usize];
            stream.read_exact(&mut hello).await.expect("handshake");
            stream.write_all(&reply).await.expect("reply");
            sleep(Duration::from_secs(30)).await;
            drop(stream);
        });
        let config = config(1, &addrs);
        let queue_max = config.peer_queue_size_max;
        let net = start(config).await;
        wait_for("connected", || net.counters().connects_outbound == 1).await;

        let value = Bytes::from(vec![3_u8; 64 << 10]);
        let message = accept(1, 2, 1, &value);
        let calls = (100 << 20) / value.len();
        let mut frame_size_max = 0;
        for call in 0..calls {
            let before = net.peer_queue_size(NodeId(2));
            net.send(NodeId(2), std::slice::from_ref(&message));
            let after = net.peer_queue_size(NodeId(2));
            frame_size_max = frame_size_max.max(after.saturating_sub(before));
            assert!(
                after <= queue_max + value.len() + 1024,
                "call {call}: {after} bytes queued"
            );
            if call % 16 == 0 {
                yield_now().await;
            }
        }
        let c = net.counters();
        assert!(c.messages_dropped_queue_full > 0, "{c:?}");
        let queued = net.peer_queue_size(NodeId(2)) / frame_size_max;
        // Every message was written, is still queued (or in the write in flight),
        // or was dropped.
        let accounted = c.messages_sent + c.messages_dropped_queue_full + queued as u64;
        assert!(
            accounted <= calls as u64 && accounted + 2 * queued as u64 + 32 >= calls as u64,
            "{calls} calls, {c:?}"
        );
        net.close().await;
        drop(peer);
    })
    .expect("executor");
}

// Goal: after a peer restarts at the same address, links come back both ways.
// Method: close node 2's Net, start a new one there, send until it arrives.
#[test]
fn reconnects_after_peer_restart() {
    run_local(async {
        let addrs = free_addrs(&[1, 2]);
        let a = start(config(1, &addrs)).await;
        let b = start(config(2, &addrs)).await;
        link_delivers(&a, &b, 1).await;
        b.close().await;
        let b = start(config(2, &addrs)).await;
        link_delivers(&a, &b, 1).await;
        b.close().await;
        let b = start(config(2, &addrs)).await;
        let inbound = link_delivers(&a, &b, 7).await;
        assert!(inbound.iter().all(|m| *m == prepare(1, 2, 7)));
        link_delivers(&b, &a, 8).await;
        assert!(a.counters().connects_outbound >= 2, "{:?}", a.counters());
        a.close().await;
        b.close().await;
    })
    .expect("executor");
}

// Goal: a writer backing off from a peer that was down dials again as soon as the peer,
// back up, handshakes with it, not when its backoff runs out (a restarted follower
// waited up to `connect_backoff_max` for the catch-up its leaders sent).
// Method: node 1 with a 30 s backoff starts alone and fails to reach node 2 at least
// once; node 2 starts (and dials node 1); node 1's messages must reach node 2 within
// `wait_for`'s 5 s.
#[test]
fn an_inbound_handshake_ends_the_backoff() {
    run_local(async {
        let addrs = free_addrs(&[1, 2]);
        let mut patient = config(1, &addrs);
        patient.connect_backoff_min = Duration::from_secs(30);
        patient.connect_backoff_max = Duration::from_secs(30);
        let a = start(patient).await;
        wait_for("a failed connect", || closes(&a, "connect failed") > 0).await;
        let b = start(config(2, &addrs)).await;
        link_delivers(&a, &b, 1).await;
        a.close().await;
        b.close().await;
    })
    .expect("executor");
}

// Goal: a restarted shard binds its address even while connections it accepted
// before sit in TIME_WAIT (accepted sockets get SO_REUSEADDR).
// Method: a raw client handshakes as node 1 with node 2; node 2 closes first, the
// client sees the end of stream and closes (node 2's side enters TIME_WAIT); start
// node 2 again on the same address.
#[test]
fn restart_despite_time_wait() {
    run_local(async {
        let addrs = free_addrs(&[1, 2]);
        let b = start(config(2, &addrs)).await;
        let server = b.local_addr();
        let hello = hello(&addrs, 1, None);
        let client = glommio::spawn_local(async move {
            let mut stream = TcpStream::connect(server).await.expect("connect");
            stream.write_all(&hello).await.expect("write");
            let mut reply = Vec::new();
            read_frame(&mut stream, HANDSHAKE_SIZE_MAX, &mut reply)
                .await
                .map_err(|closed| closed.reason)
                .expect("handshake reply");
            assert!(closed_by_server(&mut stream).await);
        });
        wait_for("handshake", || b.counters().connects_inbound == 1).await;
        b.close().await;
        client.await;
        let b = start(config(2, &addrs)).await;
        b.close().await;
    })
    .expect("executor");
}

// Goal: readers stop reading while inbound_count_max messages wait to be drained,
// and nothing is lost: everything arrives once the shard drains.
// Method: node 2 sends 1,000 single-message frames to node 1, which does not drain
// at first; check the bound, then drain until all arrived, in order.
#[test]
fn inbound_backpressure_pauses_readers() {
    run_local(async {
        let addrs = free_addrs(&[1, 2]);
        let mut receiver = config(1, &addrs);
        receiver.inbound_count_max = 10;
        let a = start(receiver).await;
        let b = start(config(2, &addrs)).await;
        wait_for("link 2 -> 1", || b.counters().connects_outbound == 1).await;
        for seq in 0..1000 {
            b.send(NodeId(1), &[prepare(2, 1, seq)]);
            if seq % 50 == 0 {
                // Let the writer run: frames leave in several writes.
                sleep(Duration::from_millis(1)).await;
            }
        }
        wait_for("the reader to fill the inbound queue", || {
            a.counters().messages_received >= 10
        })
        .await;
        sleep(Duration::from_millis(50)).await;
        // One frame (one message here) may land past the bound.
        assert!(a.counters().messages_received <= 11, "{:?}", a.counters());
        let mut inbound = Vec::new();
        wait_for("every message", || {
            a.drain_inbound(&mut inbound);
            inbound.len() >= 1000
        })
        .await;
        let expected: Vec<Message> = (0..1000).map(|seq| prepare(2, 1, seq)).collect();
        assert!(inbound == expected);
        a.close().await;
        b.close().await;
    })
    .expect("executor");
}

// Goal: a second connection from the same peer replaces the first.
// Method: two raw clients handshake as node 2; the first is closed ("replaced"),
// the second's frames arrive.
#[test]
fn later_connection_replaces_earlier() {
    run_local(async {
        let addrs = free_addrs(&[1, 2]);
        let net = start(config(1, &addrs)).await;
        let server = net.local_addr();
        let mut first = TcpStream::connect(server).await.expect("connect");
        let hello = hello(&addrs, 2, None);
        first.write_all(&hello).await.expect("write");
        wait_for("first handshake", || net.counters().connects_inbound == 1).await;
        let mut second = TcpStream::connect(server).await.expect("connect");
        let bytes = [
            hello,
            frame(&FrameBody::MessageBatch(vec![prepare(2, 1, 5)])),
        ]
        .concat();
        second.write_all(&bytes).await.expect("write");
        assert!(closed_by_server(&mut first).await, "first not closed");
        assert_eq!(closes(&net, "replaced"), 1);
        assert_eq!(wait_inbound(&net).await, vec![prepare(2, 1, 5)]);
        drop(second);
        net.close().await;
    })
    .expect("executor");
}

// Goal: binding an address some socket already listens on fails clearly (glommio's
// SO_REUSEPORT would otherwise let both listeners share it).
// Method: start two Nets on one address.
#[test]
fn double_bind_fails() {
    run_local(async {
        let addrs = free_addrs(&[1, 2]);
        let first = start(config(1, &addrs)).await;
        let second = Net::start(config(1, &addrs), Rc::new(|| {})).await;
        assert!(
            matches!(second, Err(NetError::AddressInUse { addr }) if addr == addrs[&NodeId(1)]),
            "{second:?}"
        );
        first.close().await;
        // Closed: the address is free again.
        let again = start(config(1, &addrs)).await;
        again.close().await;
    })
    .expect("executor");
}

// Goal: an address can be bound again while a connection its earlier listener accepted
// lives on (open, or in TIME_WAIT after the close of a stopped node), so a restart on
// it starts; and still not while another socket listens there.
// Method: listen, accept one connection, drop the listener but keep the connection;
// listen again on the address, then once more beside that listener.
#[test]
fn rebind_beside_an_accepted_connection() {
    run_local(async {
        let addrs = free_addrs(&[1]);
        let addr = addrs[&NodeId(1)];
        let first = super::listen::listen(addr).expect("listen");
        let client = std::net::TcpStream::connect(addr).expect("connect");
        let accepted = first.accept().await.expect("accept");
        drop(first);
        let again = super::listen::listen(addr).expect("bind beside the accepted connection");
        let third = super::listen::listen(addr);
        assert!(
            matches!(&third, Err(error) if error.kind() == io::ErrorKind::AddrInUse),
            "a second listener on {addr}: {:?}",
            third.map(|_| ())
        );
        drop((client, accepted, again));
    })
    .expect("executor");
}

// Goal: the links' reusable buffers keep a burst's capacity only while it is recent:
// after a burst the writer's buffers and the reader's frame buffer shrink back near
// the ordinary round, as `Net::buffer_capacity` counts.
// Method: two Nets; node 1 sends one 4 MiB round (64 values of 64 KiB) and the
// buffers on both sides are counted; then 2 x KEEP_WINDOW + 8 rounds of one small
// message, each delivered before the next, and the buffers counted again.
#[test]
fn link_buffers_forget_a_burst() {
    run_local(async {
        let addrs = free_addrs(&[1, 2]);
        let mut nets = BTreeMap::new();
        for node in [1_u32, 2] {
            let mut config = config(node, &addrs);
            config.peer_queue_size_max = 16 << 20;
            nets.insert(node, start(config).await);
        }
        wait_for("both links up", || {
            nets.values().all(|net| {
                let c = net.counters();
                c.connects_outbound == 1 && c.connects_inbound == 1
            })
        })
        .await;
        let burst = 4 << 20;
        let value = Bytes::from(vec![5_u8; 64 << 10]);
        let messages: Vec<Message> = (0..64).map(|i| accept(1, 2, i, &value)).collect();
        nets[&1].send(NodeId(2), &messages);
        let mut inbound = Vec::new();
        wait_for("the burst delivered", || {
            nets[&2].drain_inbound(&mut inbound);
            inbound.len() == messages.len()
        })
        .await;
        let after_burst = (nets[&1].buffer_capacity(), nets[&2].buffer_capacity());
        assert!(
            after_burst.0 >= burst && after_burst.1 >= burst,
            "a recent burst is kept for reuse on both sides: {after_burst:?}"
        );
        for seq in 0..2 * u64::from(KEEP_WINDOW) + 8 {
            nets[&1].send(NodeId(2), &[prepare(1, 2, seq)]);
            let mut got = Vec::new();
            for _ in 0..5_000 {
                nets[&2].drain_inbound(&mut got);
                if !got.is_empty() {
                    break;
                }
                sleep(Duration::from_micros(200)).await;
            }
            assert_eq!(got, vec![prepare(1, 2, seq)], "round {seq}");
        }
        let after_rounds = (nets[&1].buffer_capacity(), nets[&2].buffer_capacity());
        // Node 1: its outgoing buffer and spare, and the frame buffer of node 2's
        // (idle) connection; node 2: the frame buffer reading node 1.
        assert!(
            after_rounds.0 <= 3 * KEEP_SIZE_MIN && after_rounds.1 <= 3 * KEEP_SIZE_MIN,
            "two windows of small rounds forget the burst: {after_burst:?} -> {after_rounds:?}"
        );
        for (_, net) in nets {
            net.close().await;
        }
    })
    .expect("executor");
}
