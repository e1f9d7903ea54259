//! `synod admin transfer|add-voter|remove-voter`: a running cluster's leadership and
//! membership, over `synod::client::Client` (the client protocol's
//! `TransferLeadership` and `ChangeMembership`), asked of each group's leader (found
//! by following `NotLeader` hints from any `--target`).
//!
//! A node to be added must already be in every node's address book (`--nodes`, the
//! same on every node) and running: its node hosts every group as a non-voter, and the
//! leader adds it only once it has caught up (`paxos::joining`). Replacing a voter is
//! `add-voter` of the new node, then `remove-voter` of the old one.
//!
//! Exit statuses as the key-value commands (`kv`): 0 done, 2 a bad command line, 4
//! ([`EXIT_UNAVAILABLE`]) no node could be reached (nothing was asked), 5
//! ([`EXIT_INDETERMINATE`]) the outcome is unknown (a timeout, a lost connection, a
//! leader change with the change in flight: ask `synod status`), 6 ([`EXIT_REFUSED`])
//! the node refused, with its reason. One line on stderr says why.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use synod::api::MembershipChange;
use synod::client::{Client, ClientConfig, Error, ServerError};
use synod::paxos::{GroupId, NodeId};
use synod::runtime::clock::MonotonicClock;
use synod::runtime::driver::TRANSFER_TARGET_NOT_A_VOTER;

use super::kv::{TargetArgs, EXIT_INDETERMINATE, EXIT_REFUSED, EXIT_UNAVAILABLE};
use super::read_key;

/// The pause before a request is asked again after an answer that did nothing.
const RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// `synod admin ...`.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// What to ask.
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// The subcommands of `synod admin`.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Hand a group's leadership over to a node (a voter of the group); done once it
    /// leads.
    Transfer(TransferArgs),
    /// Add a node as a voter of a group; done once it caught up and the change is in
    /// effect.
    AddVoter(VoterArgs),
    /// Remove a voter of a group; done once the change is in effect (to remove the
    /// leader, transfer its leadership first to choose who leads next).
    RemoveVoter(VoterArgs),
}

/// `synod admin transfer --group G --to N`.
#[derive(Debug, Args)]
pub struct TransferArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// The group.
    #[arg(long, value_name = "G")]
    group: u32,
    /// The node that is to lead it.
    #[arg(long, value_name = "N")]
    to: u32,
}

/// `synod admin add-voter|remove-voter --group G --node N`.
#[derive(Debug, Args)]
pub struct VoterArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// The group.
    #[arg(long, value_name = "G")]
    group: u32,
    /// The node added or removed.
    #[arg(long, value_name = "N")]
    node: u32,
}

/// Runs `synod admin ...`: the exit status, after one line on stderr unless done.
#[must_use]
pub fn main(args: AdminArgs) -> ExitCode {
    let (target, done) = match &args.command {
        AdminCommand::Transfer(a) => (&a.target, format!("group {}: node {} leads", a.group, a.to)),
        AdminCommand::AddVoter(a) => (
            &a.target,
            format!("group {}: node {} is a voter", a.group, a.node),
        ),
        AdminCommand::RemoveVoter(a) => (
            &a.target,
            format!("group {}: node {} is no voter", a.group, a.node),
        ),
    };
    let client = match connect(target) {
        Ok(client) => client,
        Err((code, line)) => return fail(code, &line),
    };
    // Retried while nothing was done (no leader known yet, a node down), until
    // --timeout-s. A transfer is retried after a refusal too (but one to a non-voter):
    // the leader either leads on (what was in flight was not chosen in time) or another
    // replica took over (the target could not win, e.g. still catching up); either way
    // the target does not lead yet, and asking again asks whoever leads now.
    let transfer = matches!(args.command, AdminCommand::Transfer(_));
    let retry = |error: &Error| {
        error.is_retryable()
            || (transfer
                && matches!(error, Error::Server(ServerError::Rejected { reason })
                    if reason != TRANSFER_TARGET_NOT_A_VOTER))
    };
    let clock = MonotonicClock::start();
    let deadline = clock
        .now()
        .plus(target.timeout_s.saturating_mul(1_000_000_000));
    let mut outcome = ask(&client, &args.command);
    while outcome.as_ref().is_err_and(retry) && clock.now() < deadline {
        std::thread::sleep(RETRY_INTERVAL);
        outcome = ask(&client, &args.command);
    }
    match outcome {
        Ok(()) => {
            println!("{done}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            let (code, line) = classify(&error);
            fail(code, &line)
        }
    }
}

/// Sends `command` to the group's leader and waits for the answer.
fn ask(client: &Client, command: &AdminCommand) -> Result<(), Error> {
    futures_lite::future::block_on(async {
        match command {
            AdminCommand::Transfer(a) => {
                client
                    .transfer_leadership(GroupId(a.group), NodeId(a.to))
                    .await
            }
            AdminCommand::AddVoter(a) => {
                let change = MembershipChange::AddVoter(NodeId(a.node));
                client.change_membership(GroupId(a.group), change).await
            }
            AdminCommand::RemoveVoter(a) => {
                let change = MembershipChange::RemoveVoter(NodeId(a.node));
                client.change_membership(GroupId(a.group), change).await
            }
        }
    })
}

/// A client of `--target` whose requests may take the whole `--timeout-s` (a new
/// voter's catch-up can take several election timeouts).
fn connect(args: &TargetArgs) -> Result<Client, (u8, String)> {
    let key = read_key("--client-key-file", args.client_key_file.as_deref())
        .map_err(|why| (EXIT_REFUSED, format!("refused: {why}")))?;
    let config = ClientConfig {
        key,
        request_timeout: Duration::from_secs(args.timeout_s),
        ..ClientConfig::default()
    };
    Client::connect_with(&args.target, args.cluster, config)
        .map_err(|e| (EXIT_UNAVAILABLE, format!("unavailable: --target: {e}")))
}

/// The exit status and the line of a failed request.
fn classify(error: &Error) -> (u8, String) {
    match error {
        Error::Server(ServerError::Indeterminate | ServerError::Stopped | ServerError::Aborted)
        | Error::Io { .. }
        | Error::Disconnected { .. }
        | Error::Codec { .. }
        | Error::Timeout { .. } => (EXIT_INDETERMINATE, format!("outcome unknown: {error}")),
        Error::Server(_) => (EXIT_REFUSED, format!("refused: {error}")),
        Error::NoReachableNode { .. }
        | Error::NodeUnreachable { .. }
        | Error::Refused { .. }
        | Error::Handshake { .. } => (EXIT_UNAVAILABLE, format!("unavailable: {error}")),
        // A kind this command does not know: the outcome is not known either.
        _ => (EXIT_INDETERMINATE, format!("outcome unknown: {error}")),
    }
}

fn fail(code: u8, line: &str) -> ExitCode {
    eprintln!("synod: {line}");
    ExitCode::from(code)
}
