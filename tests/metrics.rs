//! The metrics endpoint and the embedders' metrics hook: `synod serve --metrics-listen`
//! answers `GET /metrics` in the Prometheus text format, its numbers move under load,
//! and bad requests get an error status while the node keeps serving; an embedding
//! program gets the same snapshot from `NodeHandle::metrics`.
//!
//! The exposition is read by a small strict parser of the text format (HELP and TYPE
//! lines, metric names, label sets with escapes, values) that refuses anything else.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::cluster::{free_ports, propose_anywhere, Cluster, Outcome, Shape, TempDir};
use common::serve::Serve;
use futures_lite::future::block_on;
use synod::paxos::{GroupId, NodeId};

/// One sample of the exposition: its name, labels and value.
#[derive(Clone, Debug, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed exposition: each family's type by name, and the samples in order.
#[derive(Debug, Default)]
struct Exposition {
    types: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

impl Exposition {
    /// The value of the one sample `name` whose labels include `labels`; panics when
    /// there is none or more than one.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
        found[0].value
    }

    /// The sum over every sample `name`.
    fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum()
    }
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The family a sample belongs to: its own name, or a histogram's name without its
/// `_bucket`, `_sum` or `_count` suffix.
fn family<'n>(types: &BTreeMap<String, String>, name: &'n str) -> Option<&'n str> {
    if types.contains_key(name) {
        return Some(name);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        name.strip_suffix(suffix)
            .filter(|base| types.get(*base).map(String::as_str) == Some("histogram"))
    })
}

/// Parses `{k="v",...}` (values with `\\`, `\"` and `\n` escapes); returns the labels
/// and the rest of the line.
fn parse_labels(text: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let Some(mut rest) = text.strip_prefix('{') else {
        return Ok((labels, text));
    };
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("label without '='")?;
        let key = &rest[..eq];
        if !is_name(key) {
            return Err(format!("bad label name {key:?}"));
        }
        let mut chars = rest[eq + 1..].char_indices();
        if chars.next().map(|(_, c)| c) != Some('"') {
            return Err("label value not quoted".to_string());
        }
        let mut value = String::new();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break eq + 1 + i + 1,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".to_string()),
            }
        };
        if labels.insert(key.to_string(), value).is_some() {
            return Err(format!("label {key} twice"));
        }
        rest = &rest[end..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// Parses the Prometheus text format strictly: every line a HELP, a TYPE (each family
/// declared once, before its samples, as counter, gauge or histogram) or a sample
/// of a declared family with a finite value (or `+Inf`).
fn parse(text: &str) -> Result<Exposition, String> {
    let mut out = Exposition::default();
    for (number, line) in text.lines().enumerate() {
        let fail = |why: &str| format!("line {}: {why}: {line:?}", number + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default();
            if !is_name(name) {
                return Err(fail("bad HELP name"));
            }
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let words: Vec<&str> = rest.split(' ').collect();
            let [name, kind] = words[..] else {
                return Err(fail("TYPE needs a name and a type"));
            };
            if !is_name(name) || !["counter", "gauge", "histogram"].contains(&kind) {
                return Err(fail("bad TYPE"));
            }
            if out
                .types
                .insert(name.to_string(), kind.to_string())
                .is_some()
            {
                return Err(fail("family declared twice"));
            }
        } else if line.starts_with('#') || line.is_empty() {
            return Err(fail("unexpected comment or blank line"));
        } else {
            let end = line.find(['{', ' ']).ok_or_else(|| fail("no value"))?;
            let name = &line[..end];
            if !is_name(name) || family(&out.types, name).is_none() {
                return Err(fail("sample of an undeclared family"));
            }
            let (labels, rest) = parse_labels(&line[end..]).map_err(|e| fail(&e))?;
            let value = rest.strip_prefix(' ').ok_or_else(|| fail("no space"))?;
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().map_err(|_| fail("bad value"))?,
            };
            if value.is_nan() {
                return Err(fail("NaN"));
            }
            out.samples.push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
        }
    }
    Ok(out)
}

/// One HTTP exchange: sends `request` as is, reads the whole answer (the server
/// closes). Returns the status code, the headers (lower-case names) and the body.
fn http(address: SocketAddr, request: &[u8]) -> (u16, BTreeMap<String, String>, String) {
    let mut stream = TcpStream::connect(address).expect("connect to the metrics endpoint");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    // The server may answer (and close) before reading all of an oversized request:
    // a write error then is part of the exchange, not a failure.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8(answer).expect("an answer in UTF-8");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.lines();
    let status = lines.next().expect("a status line");
    let code = status
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    (code, headers, body.to_string())
}

/// Scrapes `/metrics` at `address` and parses it (status 200, the text format's
/// content type, a strict parse).
fn scrape(address: SocketAddr) -> Exposition {
    let (code, headers, body) = http(address, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        headers.get("content-type").map(String::as_str),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(headers.get("content-length"), Some(&body.len().to_string()));
    parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"))
}

/// The families every scrape must declare, with their types.
const FAMILIES: &[(&str, &str)] = &[
    ("synod_node_info", "gauge"),
    ("synod_shard_up", "gauge"),
    ("synod_proposals_received_total", "counter"),
    ("synod_proposals_applied_total", "counter"),
    ("synod_proposals_failed_total", "counter"),
    ("synod_wal_writes_total", "counter"),
    ("synod_wal_records_total", "counter"),
    ("synod_wal_fdatasync_seconds", "histogram"),
    ("synod_wal_write_size_bytes", "histogram"),
    ("synod_wal_durable_lsn", "gauge"),
    ("synod_queue_depth", "gauge"),
    ("synod_elections_started_total", "counter"),
    ("synod_elections_won_total", "counter"),
    ("synod_net_messages_dropped_total", "counter"),
    ("synod_net_connections_closed_total", "counter"),
    ("synod_messages_ignored_total", "counter"),
    ("synod_peer_connected", "gauge"),
    ("synod_peer_queue_bytes", "gauge"),
    ("synod_catch_up_raw_runs_received_total", "counter"),
    ("synod_group_chosen_through", "gauge"),
    ("synod_group_applied_through", "gauge"),
    ("synod_group_leader", "gauge"),
];

/// `synod serve` flags of node `id` of three on loopback, new, without keys, with
/// test timeouts, commands on stdin and metrics at `metrics`.
fn node_args(id: u32, peers: &str, dir: &TempDir, metrics: SocketAddr) -> Vec<String> {
    let dir = dir.path().display().to_string();
    let id = id.to_string();
    let metrics = metrics.to_string();
    [
        "--node",
        &id,
        "--nodes",
        peers,
        "--dir",
        &dir,
        "--new",
        "--no-auth",
        "--test-timeouts",
        "--control",
        "--metrics-listen",
        &metrics,
    ]
    .iter()
    .map(|a| a.to_string())
    .collect()
}

/// Proposes `word` to group 0 through `node`'s control input until it is chosen
/// (a new node answers "not the leader" until it has elected itself).
fn propose_retrying(node: &mut Serve, word: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match node.propose(0, word, Duration::from_secs(10)) {
            Some(Ok(_)) => return,
            answer => assert!(Instant::now() < deadline, "{word}: {answer:?}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// Goal: a three-node cluster's endpoint declares every family with its type, shows
// each peer's link up, and under writes its proposals, watermarks and fdatasync
// histogram move (and stay consistent: the histogram's count equals the writes).
// Method: three `synod serve` children; scrape the node that accepts proposals
// before and after 40 of them; compare.
#[test]
fn metrics_move_under_load() {
    let peer_base = free_ports(3);
    let metrics_base = free_ports(3);
    let peers = (0..3)
        .map(|i| format!("{}=127.0.0.1:{}", i + 1, peer_base + i))
        .collect::<Vec<_>>()
        .join(",");
    let addresses: Vec<SocketAddr> = (0..3)
        .map(|i| SocketAddr::from(([127, 0, 0, 1], metrics_base + i)))
        .collect();
    let dirs: Vec<TempDir> = (1..=3)
        .map(|i| TempDir::new(&format!("metrics-load-{i}")))
        .collect();
    let mut nodes: Vec<Serve> = (0..3)
        .map(|i| {
            let args = node_args(i + 1, &peers, &dirs[i as usize], addresses[i as usize]);
            Serve::spawn(&format!("node {}", i + 1), &args)
        })
        .collect();

    // Every node's links to both peers come up (both directions).
    let deadline = Instant::now() + Duration::from_secs(20);
    for (i, address) in addresses.iter().enumerate() {
        loop {
            let scraped = scrape(*address);
            for (name, kind) in FAMILIES {
                assert_eq!(
                    scraped.types.get(*name).map(String::as_str),
                    Some(*kind),
                    "{name}"
                );
            }
            let node = (i + 1).to_string();
            assert_eq!(scraped.value("synod_node_info", &[("node", &node)]), 1.0);
            let up = scraped
                .samples
                .iter()
                .filter(|s| s.name == "synod_peer_connected" && s.value == 1.0)
                .count();
            if up == 4 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {}: links not up: {up}",
                i + 1
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // The node that accepts the first proposal leads group 0: the rest go there.
    let leader = (0..)
        .map(|attempt: usize| attempt % 3)
        .take(600)
        .find(|&i| {
            let answer = nodes[i].propose(0, "first", Duration::from_secs(10));
            if !matches!(answer, Some(Ok(_))) {
                std::thread::sleep(Duration::from_millis(50));
            }
            matches!(answer, Some(Ok(_)))
        })
        .expect("some node leads group 0");
    let before = scrape(addresses[leader]);
    for n in 0..40 {
        let answer = nodes[leader].propose(0, &format!("v{n}"), Duration::from_secs(10));
        assert!(matches!(answer, Some(Ok(_))), "proposal {n}: {answer:?}");
    }
    let after = scrape(addresses[leader]);
    let shard = [("shard", "0")];
    let moved = |name: &str, labels: &[(&str, &str)]| {
        (before.value(name, labels), after.value(name, labels))
    };
    let (received, received_after) = moved("synod_proposals_received_total", &shard);
    assert!(
        received_after >= received + 40.0,
        "{received} -> {received_after}"
    );
    let (applied, applied_after) = moved("synod_proposals_applied_total", &shard);
    assert!(
        applied_after >= applied + 40.0,
        "{applied} -> {applied_after}"
    );
    let group = [("group", "0")];
    let (chosen, chosen_after) = moved("synod_group_chosen_through", &group);
    assert!(chosen_after >= chosen + 40.0, "{chosen} -> {chosen_after}");
    let (_, applied_through) = moved("synod_group_applied_through", &group);
    assert!(applied_through >= chosen + 40.0);
    assert_eq!(after.value("synod_group_leader", &group), 1.0);
    let (syncs, syncs_after) = moved("synod_wal_fdatasync_seconds_count", &shard);
    assert!(syncs_after > syncs, "{syncs} -> {syncs_after}");
    // One fdatasync per write (counted when planned; the one in flight, if any, is
    // not observed yet); the +Inf bucket holds every observation.
    let writes = after.value("synod_wal_writes_total", &shard);
    let in_flight = after.value("synod_wal_write_in_flight", &shard);
    assert!(
        syncs_after <= writes && writes - syncs_after <= in_flight,
        "{syncs_after} fdatasyncs, {writes} writes, {in_flight} in flight"
    );
    let inf = [("shard", "0"), ("le", "+Inf")];
    assert_eq!(
        after.value("synod_wal_fdatasync_seconds_bucket", &inf),
        syncs_after
    );
    assert!(after.value("synod_wal_fdatasync_seconds_sum", &shard) > 0.0);
    let (durable, durable_after) = moved("synod_wal_durable_lsn", &shard);
    assert!(durable_after > durable);
    // Followers write what they accept: their histograms moved too.
    for (i, address) in addresses.iter().enumerate().filter(|(i, _)| *i != leader) {
        let follower = scrape(*address);
        assert!(
            follower.value("synod_wal_fdatasync_seconds_count", &shard) > 0.0,
            "node {}",
            i + 1
        );
        assert_eq!(follower.value("synod_group_leader", &group), 0.0);
    }
    assert!(after.sum("synod_elections_won_total") >= 1.0);
    for node in nodes.drain(..) {
        node.stop();
    }
}

// Goal: what is not a good scrape gets its error status (garbage 400, a wrong path
// 404, a wrong method 405, an oversized head 431), a client that sends nothing is
// dropped within the bound, and through all of it the node keeps serving scrapes
// and proposals.
// Method: one `synod serve`; raw requests over TCP; a scrape and a proposal after.
#[test]
fn bad_requests_get_errors_and_the_node_keeps_serving() {
    let dir = TempDir::new("metrics-bad");
    let address = SocketAddr::from(([127, 0, 0, 1], free_ports(1)));
    let peers = format!("1=127.0.0.1:{}", free_ports(1));
    let mut node = Serve::spawn("metrics-bad", &node_args(1, &peers, &dir, address));
    propose_retrying(&mut node, "a");

    let cases: [(&[u8], u16); 6] = [
        (b"hello there\r\n\r\n", 400),
        (b"\x00\x01\x02\x03\n\n", 400),
        (b"GET /other HTTP/1.1\r\n\r\n", 404),
        (b"GET / HTTP/1.1\r\n\r\n", 404),
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405),
        (b"GET /metrics HTTP/2\r\n\r\n", 400),
    ];
    for (request, expected) in cases {
        let (code, _, _) = http(address, request);
        assert_eq!(code, expected, "{:?}", String::from_utf8_lossy(request));
    }
    let mut oversized = b"GET /metrics HTTP/1.1\r\n".to_vec();
    oversized.extend(std::iter::repeat_n(b'a', 64 << 10));
    let (code, _, _) = http(address, &oversized);
    assert_eq!(code, 431);
    let (code, headers, body) = http(address, b"HEAD /metrics HTTP/1.1\r\n\r\n");
    assert_eq!((code, body.as_str()), (200, ""));
    assert!(headers["content-length"].parse::<usize>().expect("length") > 0);

    // A client that connects and sends nothing holds the endpoint's one thread for
    // at most its request timeout (5 s): a scrape behind it is answered.
    let idle = TcpStream::connect(address).expect("connect");
    let started = Instant::now();
    let scraped = scrape(address);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    drop(idle);
    assert_eq!(scraped.value("synod_shard_up", &[("shard", "0")]), 1.0);
    assert!(scraped.value("synod_proposals_applied_total", &[("shard", "0")]) >= 1.0);
    propose_retrying(&mut node, "b");
    node.stop();
}

// Goal: an embedding program gets the same snapshot through `NodeHandle::metrics`,
// per shard, and its exposition parses and counts what it proposed.
// Method: a one-node, two-shard in-process cluster; proposals to four groups; encode.
#[test]
fn embedders_get_the_snapshot_from_the_handle() {
    let cluster = Cluster::new(
        "metrics-embed",
        Shape {
            nodes: 1,
            shards: 2,
            groups: 4,
        },
    );
    let handles = cluster.handles();
    let deadline = Instant::now() + Duration::from_secs(20);
    for group in 0..4 {
        for n in 0..5 {
            let value = Bytes::from(format!("{group}-{n}"));
            let outcome = propose_anywhere(&handles, GroupId(group), value, deadline);
            assert!(matches!(outcome, Outcome::Chosen(_)), "{outcome:?}");
        }
    }
    let metrics = block_on(handles[&NodeId(1)].metrics()).expect("a snapshot");
    assert_eq!(metrics.node, NodeId(1));
    assert_eq!(metrics.shards.len(), 2);
    let applied: u64 = metrics
        .shards
        .iter()
        .map(|s| s.metrics.proposals.applied)
        .sum();
    assert_eq!(applied, 20);
    let text = metrics.encode();
    let parsed = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(parsed.sum("synod_proposals_applied_total"), 20.0);
    for group in 0..4 {
        let through = parsed.value(
            "synod_group_applied_through",
            &[("group", &group.to_string())],
        );
        assert!(through >= 5.0, "group {group}: {through}");
    }
    assert!(parsed.sum("synod_wal_fdatasync_seconds_count") >= 1.0);
}

// Goal: the test's parser is strict: it refuses what the format does not allow.
// Method: parse a few faulty expositions.
#[test]
fn the_parser_refuses_faulty_text() {
    let good = "# HELP a_total x\n# TYPE a_total counter\na_total{k=\"v\\\"\"} 1\n";
    let parsed = parse(good).expect("good");
    assert_eq!(parsed.samples[0].labels["k"], "v\"");
    for bad in [
        "a_total 1\n",
        "# TYPE a gauge\na{k=v} 1\n",
        "# TYPE a gauge\na 1 2 x\n",
        "# TYPE a gauge\n# TYPE a gauge\n",
        "# TYPE a summary\n",
        "# TYPE a gauge\na{k=\"v\"\n",
        "# TYPE a gauge\n\na 1\n",
        "# TYPE a gauge\na NaN\n",
    ] {
        assert!(parse(bad).is_err(), "{bad:?}");
    }
}
