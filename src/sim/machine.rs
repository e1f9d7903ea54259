//! `SimMachine`: the state machine of every simulated group replica, a real
//! `runtime::StateMachine`: its state is a running CRC32C over the values it applied
//! (with their instances) and their count, so two replicas that applied the same
//! values agree on it, and the checkpoint checker can compute what it must be at any
//! instance from the chosen log alone ([`SimMachine::fold`]).
//!
//! Its checkpoint image is the state plus a padding derived from it (up to a few
//! sectors, so a torn image file tears inside the image); `restore` refuses an image
//! whose padding does not match.

use bytes::Bytes;

use crate::paxos::{Body, Entry, Instance};
use crate::runtime::state_machine::{CheckpointImage, StateMachine};
use crate::support::{le_u32, le_u64};

/// The state of a simulated replica's state machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MachineState {
    /// Running CRC32C over (instance, value) of every value applied.
    pub digest: u32,
    /// Values applied.
    pub values: u64,
}

/// A simulated group's state machine. See the module docs.
#[derive(Clone, Debug, Default)]
pub struct SimMachine {
    state: MachineState,
}

impl SimMachine {
    /// A machine that applied nothing.
    #[must_use]
    pub fn new() -> SimMachine {
        SimMachine::default()
    }

    /// The state now.
    #[must_use]
    pub fn state(&self) -> MachineState {
        self.state
    }

    /// `state` after applying `value` at `instance`.
    #[must_use]
    pub fn fold(state: MachineState, instance: Instance, value: &[u8]) -> MachineState {
        let digest = crc32c::crc32c_append(state.digest, &instance.0.to_le_bytes());
        MachineState {
            digest: crc32c::crc32c_append(digest, value),
            values: state.values + 1,
        }
    }

    /// `state` after an applied entry as the runtime hands it on: every value of a
    /// non-skipped `Values` entry, nothing for any other.
    #[must_use]
    pub fn fold_entry(
        mut state: MachineState,
        instance: Instance,
        entry: &Entry,
        skip: bool,
    ) -> MachineState {
        if let (Body::Values(values), false) = (&entry.body, skip) {
            for value in values {
                state = SimMachine::fold(state, instance, value);
            }
        }
        state
    }

    fn padding(state: MachineState) -> Vec<u8> {
        let len = (state.values % 3_000) as usize;
        (0..len)
            .map(|i| state.digest.to_le_bytes()[i % 4] ^ i as u8)
            .collect()
    }
}

impl StateMachine for SimMachine {
    fn apply(&mut self, instance: Instance, value: &[u8]) -> Bytes {
        self.state = SimMachine::fold(self.state, instance, value);
        Bytes::new()
    }

    fn query(&self, _: &[u8]) -> Bytes {
        Bytes::new()
    }

    fn checkpoint(&self) -> Option<CheckpointImage> {
        let mut image = self.state.digest.to_le_bytes().to_vec();
        image.extend_from_slice(&self.state.values.to_le_bytes());
        image.extend_from_slice(&SimMachine::padding(self.state));
        Some(CheckpointImage::ready(Bytes::from(image)))
    }

    fn restore(&mut self, _: Instance, image: &[u8]) -> Result<(), String> {
        if image.len() < 12 {
            return Err(format!("image of {} bytes", image.len()));
        }
        let state = MachineState {
            digest: le_u32(image, 0),
            values: le_u64(image, 4),
        };
        if image[12..] != SimMachine::padding(state) {
            return Err("image padding does not match its state".to_string());
        }
        self.state = state;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: an image restores the state it was taken at; a damaged one is refused.
    // Method: apply, checkpoint, restore into a fresh machine; flip a padding byte.
    #[test]
    fn image_round_trip() {
        let mut machine = SimMachine::new();
        for i in 1..=40 {
            machine.apply(Instance(i), &[i as u8; 5]);
        }
        let image = machine.checkpoint().expect("checkpoints").into_bytes();
        let mut fresh = SimMachine::new();
        fresh.restore(Instance(40), &image).expect("restores");
        assert_eq!(fresh.state(), machine.state());
        let mut bad = image.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(SimMachine::new().restore(Instance(40), &bad).is_err());
    }
}
