//! Following one request: the client listener's spans and the shard's form one chain
//! (`connection` > `request` > `propose`), with the identifiers that tie it together
//! as fields (connection, request id, group, proposal id, instance), in process, with
//! a subscriber that records every span and event of `synod` at DEBUG.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::cluster::{Cluster, Shape};
use synod::client::Client;
use synod::paxos::{GroupId, NodeId};
use synod::server::{Server, ServerConfig};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// One span as recorded: its name, its parent (by sequence number), its fields.
#[derive(Clone, Debug, Default)]
struct SpanRecord {
    name: String,
    parent: Option<u64>,
    fields: BTreeMap<String, String>,
    closed: bool,
}

/// One event: its message, its span (by sequence number), its fields.
#[derive(Clone, Debug, Default)]
struct EventRecord {
    message: String,
    span: Option<u64>,
    fields: BTreeMap<String, String>,
}

#[derive(Default)]
struct Captured {
    spans: BTreeMap<u64, SpanRecord>,
    events: Vec<EventRecord>,
    next: u64,
}

/// A span's sequence number (registry ids are reused after a span closes).
struct Seq(u64);

/// Records fields as text (strings without quotes).
struct Fields<'a>(&'a mut BTreeMap<String, String>, Option<&'a mut String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        match (field.name(), self.1.as_deref_mut()) {
            ("message", Some(message)) => *message = text,
            _ => {
                self.0.insert(field.name().to_string(), text);
            }
        }
    }
}

#[derive(Clone)]
struct Capture(Arc<Mutex<Captured>>);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let span = ctx.span(id).expect("new span");
        let parent = span
            .parent()
            .and_then(|p| p.extensions().get::<Seq>().map(|s| s.0));
        let mut record = SpanRecord {
            name: span.name().to_string(),
            parent,
            ..SpanRecord::default()
        };
        attrs.record(&mut Fields(&mut record.fields, None));
        let mut captured = self.0.lock().expect("capture");
        captured.next += 1;
        let seq = captured.next;
        captured.spans.insert(seq, record);
        span.extensions_mut().insert(Seq(seq));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(seq) = ctx
            .span(id)
            .and_then(|s| s.extensions().get::<Seq>().map(|s| s.0))
        else {
            return;
        };
        let mut captured = self.0.lock().expect("capture");
        if let Some(span) = captured.spans.get_mut(&seq) {
            values.record(&mut Fields(&mut span.fields, None));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let span = ctx
            .event_span(event)
            .and_then(|s| s.extensions().get::<Seq>().map(|s| s.0));
        let mut record = EventRecord {
            span,
            ..EventRecord::default()
        };
        event.record(&mut Fields(&mut record.fields, Some(&mut record.message)));
        self.0.lock().expect("capture").events.push(record);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(seq) = ctx
            .span(&id)
            .and_then(|s| s.extensions().get::<Seq>().map(|s| s.0))
        else {
            return;
        };
        if let Some(span) = self.0.lock().expect("capture").spans.get_mut(&seq) {
            span.closed = true;
        }
    }
}

/// The process's capture (a global subscriber: spans live on the listener's and the
/// shards' threads).
fn capture() -> Arc<Mutex<Captured>> {
    static CAPTURE: OnceLock<Arc<Mutex<Captured>>> = OnceLock::new();
    Arc::clone(CAPTURE.get_or_init(|| {
        let captured = Arc::new(Mutex::new(Captured::default()));
        let subscriber = tracing_subscriber::registry()
            .with(Capture(Arc::clone(&captured)))
            .with(Targets::new().with_target("synod", LevelFilter::DEBUG));
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        captured
    }))
}

fn field(fields: &BTreeMap<String, String>, name: &str) -> String {
    fields
        .get(name)
        .cloned()
        .unwrap_or_else(|| panic!("no field {name} in {fields:?}"))
}

// Goal: one proposal through the client listener reads as one chain of spans whose
// fields tie it together: connection > request (request id, kind, group) > propose
// (group, proposal id, instance), the shard's events (queued, in flight at the
// instance, answered with the proposal, group and instance) and the listener's answer
// (request id, instance), all with the instance the client was told; a failed request
// carries its error's kind on both sides; every shard span closes once answered.
// Method: a one-node cluster in process with a listener; a subscriber recording every
// `synod` span and event at DEBUG; one proposal and one to a group the node lacks
// through `Client`; then the records are searched.
#[test]
fn one_proposal_reads_as_one_span_chain() {
    let captured = capture();
    let cluster = Cluster::new(
        "request-trace",
        Shape {
            nodes: 1,
            shards: 2,
            groups: 2,
        },
    );
    let group = GroupId(1);
    cluster.wait_leader(group, Duration::from_secs(20));
    let handle = cluster.nodes[&NodeId(1)].handle();
    let config = ServerConfig::new(
        "127.0.0.1:0".parse().expect("address"),
        cluster.cluster_id,
        NodeId(1),
        vec![NodeId(1)],
    );
    let server = Server::start(config, handle).expect("listener");
    let client =
        Client::connect(&[server.local_addr().to_string()], cluster.cluster_id).expect("connect");
    let proposed = client
        .propose_blocking(group, b"traced".to_vec())
        .expect("proposal");
    let instance = proposed.position.instance.0.to_string();
    assert!(client.propose_blocking(GroupId(99), b"x".to_vec()).is_err());

    // The shard's spans close on its thread just after it answers.
    let deadline = Instant::now() + Duration::from_secs(5);
    let captured = loop {
        let snapshot = {
            let c = captured.lock().expect("capture");
            (c.spans.clone(), c.events.clone())
        };
        let open = snapshot
            .0
            .values()
            .any(|s| s.name == "propose" && !s.closed && s.fields.contains_key("instance"));
        if !open || Instant::now() > deadline {
            break snapshot;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (spans, events) = captured;

    // The listener's answer names the request and the instance the client was told.
    let answered = events
        .iter()
        .find(|e| {
            e.message == "answered"
                && e.fields.get("outcome").map(String::as_str) == Some("ok")
                && e.fields.contains_key("request")
                && e.span.is_some_and(|s| spans[&s].name == "request")
        })
        .expect("the listener's answer");
    assert_eq!(field(&answered.fields, "instance"), instance);
    let request_seq = answered.span.expect("in the request span");
    let request = &spans[&request_seq];
    assert_eq!(
        field(&request.fields, "request"),
        field(&answered.fields, "request")
    );
    assert_eq!(field(&request.fields, "kind"), "propose");
    assert_eq!(field(&request.fields, "group"), group.0.to_string());
    let connection = &spans[&request.parent.expect("below the connection")];
    assert_eq!(connection.name, "connection");
    assert!(field(&connection.fields, "peer").starts_with("127.0.0.1:"));
    assert!(field(&connection.fields, "connection")
        .parse::<u64>()
        .is_ok());

    // The shard's span is the request's child, with the same group and instance.
    let (propose_seq, propose) = spans
        .iter()
        .find(|(_, s)| s.name == "propose" && s.parent == Some(request_seq))
        .expect("the shard's span below the request's");
    assert_eq!(field(&propose.fields, "group"), group.0.to_string());
    assert_eq!(field(&propose.fields, "instance"), instance);
    assert!(propose.closed, "the shard's span closes once answered");
    let proposal = field(&propose.fields, "proposal");
    let in_shard: Vec<&EventRecord> = events
        .iter()
        .filter(|e| e.span == Some(*propose_seq))
        .collect();
    let messages: Vec<&str> = in_shard.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        messages,
        ["queued", "in flight", "answered"],
        "{in_shard:?}"
    );
    assert_eq!(field(&in_shard[1].fields, "instance"), instance);
    let done = &in_shard[2].fields;
    assert_eq!(field(done, "outcome"), "ok");
    assert_eq!(field(done, "proposal"), proposal);
    assert_eq!(field(done, "group"), group.0.to_string());
    assert_eq!(field(done, "instance"), instance);

    // A failed request: its error's kind on both sides of the mailbox.
    let failed: Vec<&EventRecord> = events
        .iter()
        .filter(|e| {
            e.message == "answered"
                && e.fields.get("outcome").map(String::as_str) == Some("no_such_group")
        })
        .collect();
    let names: Vec<&str> = failed
        .iter()
        .map(|e| spans[&e.span.expect("in a span")].name.as_str())
        .collect();
    assert!(
        names.contains(&"propose") && names.contains(&"request"),
        "{failed:?}"
    );
    drop(server);
}
