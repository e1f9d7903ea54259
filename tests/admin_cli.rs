//! `synod admin transfer|add-voter|remove-voter` end to end: three `synod serve`
//! processes on loopback, two of them the initial voters (`--voters 1,2`), changed
//! through the command line over the client protocol (`TransferLeadership`,
//! `ChangeMembership`), and the refusals each printed as one line with exit status 6.

mod common;

use std::process::Output;
use std::time::{Duration, Instant};

use common::serve::{client_node_args, synod, ClientKey, Serve, ThreeNodes};
use synod::client::Client;
use synod::paxos::{GroupId, NodeId, Role};

const CLUSTER: u64 = 0xAD31;

/// The leader of group 0, from the nodes' status (30 s at most).
fn wait_leader(client: &Client) -> NodeId {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let leader = client.status_blocking().ok().and_then(|statuses| {
            statuses.iter().find_map(|n| {
                n.shards
                    .iter()
                    .flat_map(|s| &s.groups)
                    .any(|g| g.group == GroupId(0) && g.role == Role::Leader)
                    .then_some(n.node)
            })
        });
        if let Some(leader) = leader {
            return leader;
        }
        assert!(Instant::now() < deadline, "no leader of group 0");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stderr_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .map(str::to_string)
        .collect()
}

// Goal: the admin commands reach the group's leader from any node, change the voters
// one at a time and move the leadership, and a refused request says why in one line
// with exit status 6.
// Method: nodes 1-3 with voters 1 and 2; through node 1's client address: add 3 (a
// non-voter that must catch up first), hand leadership to 3, remove 1; then a
// transfer to 1 (no voter any more) and an add of node 9 (not in the address book)
// are refused.
#[test]
fn admin_commands_change_voters_and_leader() {
    let three = ThreeNodes::new("admin-cli");
    let key = ClientKey::new("admin-cli");
    let mut nodes: Vec<Serve> = Vec::new();
    for (i, dir) in three.dirs.iter().enumerate() {
        let id = i as u32 + 1;
        let mut args = client_node_args(id, CLUSTER, &three.peers, dir, &three.addresses[i]);
        args.extend(["--client-nodes".to_string(), three.clients.clone()]);
        args.extend(["--voters".to_string(), "1,2".to_string()]);
        // Leadership moves only where the commands say: balanced placement would move
        // it back to each group's preferred node meanwhile.
        args.extend(["--leader-placement".to_string(), "off".to_string()]);
        args.extend(key.args());
        nodes.push(Serve::start(&id.to_string(), &args, Some("warn")));
    }
    let nodes: Vec<Serve> = nodes
        .into_iter()
        .map(|n| n.ready(Duration::from_secs(20)))
        .collect();
    let client = Client::connect_with(&three.addresses, CLUSTER, key.config()).expect("connect");
    let leader = wait_leader(&client);
    assert_ne!(leader, NodeId(3), "node 3 is no voter yet");

    let key_path = key.path.display().to_string();
    let cluster = CLUSTER.to_string();
    let admin = |command: &str, flag: &str, node: &str| {
        synod(&[
            "admin",
            command,
            "--target",
            &three.addresses[0],
            "--cluster",
            &cluster,
            "--client-key-file",
            &key_path,
            "--group",
            "0",
            flag,
            node,
        ])
    };
    let succeeds = |output: Output, line: &str| {
        assert!(
            output.status.success(),
            "{line}: {:?} {:?}",
            output.status,
            stderr_lines(&output)
        );
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), line);
    };
    succeeds(
        admin("add-voter", "--node", "3"),
        "group 0: node 3 is a voter",
    );
    succeeds(admin("transfer", "--to", "3"), "group 0: node 3 leads");
    assert_eq!(wait_leader(&client), NodeId(3));
    succeeds(
        admin("remove-voter", "--node", "1"),
        "group 0: node 1 is no voter",
    );

    let refused = |output: Output, words: &str| {
        let lines = stderr_lines(&output);
        assert_eq!(output.status.code(), Some(6), "{lines:?}");
        assert_eq!(lines.len(), 1, "one line: {lines:?}");
        assert!(
            lines[0].starts_with("synod: refused: ") && lines[0].contains(words),
            "{lines:?}"
        );
    };
    refused(admin("transfer", "--to", "1"), "not a voter");
    refused(admin("add-voter", "--node", "9"), "address book");
    for node in nodes {
        node.stop();
    }
}
