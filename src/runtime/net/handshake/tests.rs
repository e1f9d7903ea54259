//! Tests of the pure handshake: whole exchanges with and without a key, and every
//! refusal with its reason and detail, on every side and stage.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::super::config::fixture;
use super::*;
use crate::transport::auth::AuthKey;
use crate::transport::{FrameBody, Handshake, HandshakeProof};

fn layout(nodes: &[u32]) -> BTreeMap<NodeId, SocketAddr> {
    nodes
        .iter()
        .map(|n| {
            let addr = format!("127.0.0.1:{}", 7000 + n).parse().expect("address");
            (NodeId(*n), addr)
        })
        .collect()
}

/// Node `node` of the fixture's cluster with nodes 1, 2, 3 at fixed ports (the
/// refusal details name them), with `key`.
fn config(node: u32, key: Option<&AuthKey>) -> NetConfig {
    let mut config = fixture::config(node, &layout(&[1, 2, 3]));
    config.key = key.cloned();
    config
}

fn encode(body: &FrameBody) -> Vec<u8> {
    let mut out = Vec::new();
    crate::transport::encode(body, &mut out);
    out
}

fn hello_frame(handshake: Handshake) -> Vec<u8> {
    encode(&FrameBody::Handshake(handshake))
}

fn key() -> AuthKey {
    AuthKey::from_bytes(&[7; 32]).expect("key")
}

fn other_key() -> AuthKey {
    AuthKey::from_bytes(&[8; 32]).expect("key")
}

const NONCE_D: [u8; 16] = [1; 16];
const NONCE_A: [u8; 16] = [2; 16];

/// The acceptor's side up to its reply: the reply frame and the state awaiting the proof.
fn accept_hello(acceptor: &NetConfig, frame: &[u8]) -> Result<(Vec<u8>, AwaitProof), Refusal> {
    let hello = check_hello(acceptor, frame)?;
    let nonce = hello.keyed().then_some(NONCE_A);
    let (reply, awaiting) = hello.reply(acceptor, nonce);
    Ok((hello_frame(reply), awaiting))
}

fn assert_refusal(got: Result<impl std::fmt::Debug, Refusal>, reason: &str, detail: &str) {
    let refusal = got.expect_err(reason);
    assert_eq!(refusal.reason(), reason, "{refusal:?}");
    assert_eq!(refusal.to_string(), detail, "{refusal:?}");
}

// Goal: with the same key on both sides, and with no key on either, the exchange
// accepts on both sides with the right peer identity.
// Method: node 2 dials node 1; run every stage's check on the frames the other built.
#[test]
fn the_exchange_accepts_with_a_key_and_without() {
    for key in [Some(key()), None] {
        let (acceptor, dialer) = (config(1, key.as_ref()), config(2, key.as_ref()));
        let nonce_d = key.as_ref().map(|_| NONCE_D);
        let hello = hello_frame(hello(&dialer, nonce_d));
        let (reply, awaiting) = accept_hello(&acceptor, &hello).expect("hello");
        assert_eq!(awaiting.proof_expected(), key.is_some());
        let proof = check_reply(&dialer, NodeId(1), nonce_d, &reply).expect("reply");
        assert_eq!(proof.is_some(), key.is_some());
        let proof = proof.map(|p| encode(&FrameBody::HandshakeProof(p)));
        let node = awaiting.finish(&acceptor, proof.as_deref()).expect("proof");
        assert_eq!(node, NodeId(2));
    }
}

// Goal: the acceptor refuses a hello, with the named reason and detail, for each
// identity that differs and for a key on one side only.
// Method: mutate one field of node 2's hello at a time; check the refusal.
#[test]
fn the_acceptor_refuses_bad_hellos() {
    let keyless = config(2, None);
    let base = || hello(&keyless, None);
    let cases: Vec<(Handshake, &str, String)> = vec![
        (
            Handshake {
                protocol_version: PROTOCOL_VERSION + 1,
                ..base()
            },
            "protocol version mismatch",
            format!(
                "peer speaks {}, this build {PROTOCOL_VERSION}",
                PROTOCOL_VERSION + 1
            ),
        ),
        (
            Handshake {
                cluster: 78,
                ..base()
            },
            "cluster mismatch",
            "peer cluster 78, own 77".to_string(),
        ),
        (
            Handshake {
                node: NodeId(1),
                ..base()
            },
            "own node id",
            "peer claims this node's id 1".to_string(),
        ),
        (
            Handshake {
                node: NodeId(9),
                ..base()
            },
            "unknown node",
            "node 9 is not a configured peer".to_string(),
        ),
        (
            Handshake { shard: 2, ..base() },
            "shard mismatch",
            "peer shard 2, own 3".to_string(),
        ),
        (
            Handshake {
                nonce: Some(NONCE_D),
                ..base()
            },
            "authentication mismatch",
            "peer node 2 authenticates with a key, this node has none".to_string(),
        ),
    ];
    for (hello, reason, detail) in cases {
        assert_refusal(
            check_hello(&config(1, None), &hello_frame(hello)),
            reason,
            &detail,
        );
    }
    assert_refusal(
        check_hello(&config(1, Some(&key())), &hello_frame(base())),
        "authentication mismatch",
        "peer node 2 does not authenticate, this node has a key",
    );
    let batch = encode(&FrameBody::MessageBatch(Vec::new()));
    assert_refusal(
        check_hello(&config(1, None), &batch),
        "handshake not first",
        "first frame is a MessageBatch",
    );
    let refusal = check_hello(&config(1, None), &[0xAB; 64]).expect_err("garbage");
    assert_eq!(refusal.reason(), "malformed handshake");
}

// Goal: the dialer refuses a reply from another node, a proof made with another key,
// a reply without a proof, and (only after the proof verified) another shard count or
// layout, each with its detail.
// Method: node 2 dials node 1; acceptors built from altered configurations reply.
#[test]
fn the_dialer_refuses_bad_replies() {
    let dialer = config(2, Some(&key()));
    let hello = hello_frame(hello(&dialer, Some(NONCE_D)));
    let reply_of = |acceptor: &NetConfig| accept_hello(acceptor, &hello).expect("hello").0;

    let reply = reply_of(&config(3, Some(&key())));
    assert_refusal(
        check_reply(&dialer, NodeId(1), Some(NONCE_D), &reply),
        "wrong peer",
        "dialed node 1, answered by node 3",
    );
    let reply = reply_of(&config(1, Some(&other_key())));
    assert_refusal(
        check_reply(&dialer, NodeId(1), Some(NONCE_D), &reply),
        "bad proof",
        "node 1 at 127.0.0.1:7001: the proof does not verify",
    );
    let mut unproved = hello_frame(Handshake {
        nonce: Some(NONCE_A),
        ..hello_of(1)
    });
    assert_refusal(
        check_reply(&dialer, NodeId(1), Some(NONCE_D), &unproved),
        "authentication mismatch",
        "peer node 1 does not authenticate, this node has a key",
    );
    unproved = hello_frame(hello_of(1));
    assert!(check_reply(&config(2, None), NodeId(1), None, &unproved).is_ok());

    let mut five = config(1, Some(&key()));
    five.shards = 5;
    assert_refusal(
        check_reply(&dialer, NodeId(1), Some(NONCE_D), &reply_of(&five)),
        "shard count mismatch",
        "peer node 1 has 5 shards, this node 4",
    );
    let mut moved = config(1, Some(&key()));
    moved.layout = layout(&[1, 2]);
    moved.peers.remove(&NodeId(3));
    assert_refusal(
        check_reply(&dialer, NodeId(1), Some(NONCE_D), &reply_of(&moved)),
        "layout mismatch",
        "peer node 1 has nodes 1=127.0.0.1:7001,2=127.0.0.1:7002, this node \
         1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003",
    );
    // Another key AND another layout: the proof is checked first.
    let mut both = config(1, Some(&other_key()));
    both.shards = 5;
    let refusal = check_reply(&dialer, NodeId(1), Some(NONCE_D), &reply_of(&both));
    assert_eq!(refusal.expect_err("proof").reason(), "bad proof");
}

/// Node `node`'s keyless handshake.
fn hello_of(node: u32) -> Handshake {
    hello(&config(node, None), None)
}

// Goal: the acceptor refuses a proof made with another key, a proof replayed from
// another connection, a second frame that is no proof or does not decode, and checks
// the layout only once the proof verified.
// Method: node 2's hello to node 1, then crafted second frames.
#[test]
fn the_acceptor_refuses_bad_proofs() {
    let acceptor = config(1, Some(&key()));
    let proof_of = |dialer: &NetConfig, hello: &Handshake, nonce_a: [u8; 16]| {
        let context = proof_context(77, hello.node, NodeId(1), 3);
        let key = dialer.key.as_ref().expect("keyed");
        let proof = key.prove(PROOF_ROLE_DIALER, [&NONCE_D, &nonce_a], &context);
        encode(&FrameBody::HandshakeProof(HandshakeProof { proof }))
    };
    let dialer = config(2, Some(&key()));
    let hello = super::hello(&dialer, Some(NONCE_D));
    let finish = |frame: &[u8], hello: &Handshake| {
        let (_, awaiting) = accept_hello(&acceptor, &hello_frame(hello.clone())).expect("hello");
        awaiting.finish(&acceptor, Some(frame))
    };
    assert_eq!(
        finish(&proof_of(&dialer, &hello, NONCE_A), &hello),
        Ok(NodeId(2))
    );
    assert_refusal(
        finish(
            &proof_of(&config(2, Some(&other_key())), &hello, NONCE_A),
            &hello,
        ),
        "bad proof",
        "claimed node 2: the proof does not verify",
    );
    // A proof observed on a connection where the acceptor drew another nonce.
    assert_refusal(
        finish(&proof_of(&dialer, &hello, [3; 16]), &hello),
        "bad proof",
        "claimed node 2: the proof does not verify",
    );
    // An acceptor's proof replayed as the dialer's.
    let context = proof_context(77, NodeId(2), NodeId(1), 3);
    let replayed = key().prove(PROOF_ROLE_ACCEPTOR, [&NONCE_D, &NONCE_A], &context);
    let replayed = encode(&FrameBody::HandshakeProof(HandshakeProof {
        proof: replayed,
    }));
    assert_eq!(
        finish(&replayed, &hello).expect_err("role").reason(),
        "bad proof"
    );
    let batch = encode(&FrameBody::MessageBatch(Vec::new()));
    assert_refusal(
        finish(&batch, &hello),
        "bad proof",
        "second frame is a MessageBatch",
    );
    let garbage = finish(&[0xAB; 64], &hello).expect_err("garbage");
    assert!(matches!(garbage, Refusal::ProofMalformed(_)), "{garbage:?}");
    assert_eq!(garbage.reason(), "bad proof");

    let mut other_layout = hello.clone();
    other_layout.shards = 5;
    assert_eq!(
        finish(&[0xAB; 64], &other_layout)
            .expect_err("proof first")
            .reason(),
        "bad proof"
    );
    assert_refusal(
        finish(&proof_of(&dialer, &other_layout, NONCE_A), &other_layout),
        "shard count mismatch",
        "peer node 2 has 5 shards, this node 4",
    );
}

// Goal: check_layout accepts the same shard count and layout and names both sides'
// values otherwise (a moved node, a missing node).
// Method: crafted handshakes against node 1's configuration.
#[test]
fn check_layout_names_both_sides() {
    let own = config(1, None);
    let peer = |shards: u16, layout: &BTreeMap<NodeId, SocketAddr>| Handshake {
        shards,
        layout: layout.iter().map(|(n, a)| (*n, *a)).collect(),
        ..hello_of(2)
    };
    let addrs = layout(&[1, 2, 3]);
    assert!(check_layout(&own, &peer(4, &addrs)).is_ok());
    let mut moved = addrs.clone();
    moved.insert(NodeId(3), "127.0.0.9:9".parse().expect("address"));
    let refusal = check_layout(&own, &peer(4, &moved)).expect_err("layout");
    assert_eq!(refusal.reason(), "layout mismatch");
    let detail = refusal.to_string();
    assert!(detail.contains("3=127.0.0.9:9"), "{detail}");
    assert!(detail.contains("3=127.0.0.1:7003"), "{detail}");
    let fewer = layout(&[1, 2]);
    let refusal = check_layout(&own, &peer(4, &fewer)).expect_err("layout");
    assert_eq!(refusal.reason(), "layout mismatch");
}
