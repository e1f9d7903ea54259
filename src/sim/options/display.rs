//! The one-line summary of a seed's options (`SimOptions`'s `Display`), printed with
//! every failure and by `synod sim --seed`.

use std::fmt;

use super::*;

/// Formats nanoseconds compactly: `750us`, `12.5ms`, `3.2s`.
fn duration(ns: u64) -> String {
    if ns >= S {
        format!("{:.1}s", ns as f64 / S as f64)
    } else if ns >= MS {
        format!("{:.1}ms", ns as f64 / MS as f64)
    } else {
        format!("{}us", ns / US)
    }
}

/// Formats ppm as a percentage.
fn percent(ppm: u32) -> String {
    format!("{:.2}%", f64::from(ppm) / 10_000.0)
}

impl fmt::Display for SimOptions {
    /// One line: shape, workload, network, faults, clocks, phases.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed={:#x}{} nodes={} shards={} groups={} W={} batch={}v/{}B",
            self.seed,
            if self.profile == Profile::Default {
                String::new()
            } else {
                format!(" profile={}", self.profile)
            },
            self.node_count,
            self.shards_per_node,
            self.group_count,
            self.window_instances_max,
            self.batch_values_max,
            self.batch_size_max,
        )?;
        if self.voter_count != self.node_count {
            write!(f, " voters={}", self.voter_count)?;
        }
        if let Some(mean) = self.membership_change_interval_ns_mean {
            write!(f, " change_membership_every~{}", duration(mean))?;
        }
        write!(
            f,
            " values={}..{}B",
            self.value_size_min, self.value_size_max
        )?;
        if self.large_value_ppm > 0 {
            write!(
                f,
                "+{}@<={}KiB",
                percent(self.large_value_ppm),
                self.large_value_size_max / KIB
            )?;
        }
        if let Some(slack) = self.message_size_slack {
            write!(f, " message_size=min+{slack}B")?;
            if self.large_values_forced {
                write!(f, "(forced)")?;
            }
        }
        write!(
            f,
            " propose_every={}..{} in_flight<={}",
            duration(self.proposal_interval_ns_min),
            duration(self.proposal_interval_ns_max),
            self.proposals_in_flight_max
        )?;
        write!(
            f,
            " net={}..{} loss={} dup={} reorder={}+{}",
            duration(self.network_delay_ns_min),
            duration(self.network_delay_ns_max),
            percent(self.network_loss_ppm),
            percent(self.network_duplicate_ppm),
            percent(self.network_reorder_ppm),
            duration(self.network_reorder_jitter_ns_max),
        )?;
        if self.network_forge_ppm > 0 {
            write!(f, " forge={}", percent(self.network_forge_ppm))?;
        }
        if self.network_raw_flip_ppm > 0 {
            write!(f, " raw_flip={}", percent(self.network_raw_flip_ppm))?;
        }
        self.fmt_partitions(f)?;
        match self.crash_interval_ns_mean {
            Some(mean) => write!(
                f,
                " crash=~{} down={}..{}",
                duration(mean),
                duration(self.restart_delay_ns_min),
                duration(self.restart_delay_ns_max)
            )?,
            None => write!(f, " crash=off")?,
        }
        write!(
            f,
            " disk={}..{}+sync{}..{} keep={} torn={} bitflip={} diskloss={}{}",
            duration(self.disk_write_latency_ns_min),
            duration(self.disk_write_latency_ns_max),
            duration(self.disk_sync_latency_ns_min),
            duration(self.disk_sync_latency_ns_max),
            percent(self.disk_unsynced_keep_ppm),
            percent(self.disk_torn_write_ppm),
            percent(self.disk_bit_flip_ppm),
            percent(self.disk_loss_ppm),
            self.writes_in_flight_label(),
        )?;
        match (self.retention_instances_max, self.retention_size_max) {
            (u64::MAX, usize::MAX) => write!(f, " retention=off")?,
            (count, usize::MAX) => write!(f, " retention={count}i")?,
            (u64::MAX, size) => write!(f, " retention={size}B")?,
            (count, size) => write!(f, " retention={count}i/{size}B")?,
        }
        write!(
            f,
            " drift<={}ppm{:?} backpressure={} placement={} safety={} liveness={}",
            self.clock_drift_bound_ppm,
            self.clock_drift_ppm,
            if self.backpressure { "on" } else { "off" },
            self.placement_name(),
            duration(self.safety_phase_ns),
            duration(self.liveness_phase_ns),
        )?;
        self.fmt_checkpoint(f)?;
        if self.faults_off.is_empty() {
            write!(f, " off=none")
        } else {
            let names: Vec<&str> = self.faults_off.iter().map(|c| c.name()).collect();
            write!(f, " off={}", names.join(","))
        }
    }
}

impl SimOptions {
    /// ` writes_in_flight=N` when more than one WAL write may be in flight.
    fn writes_in_flight_label(&self) -> String {
        if self.writes_in_flight_max > 1 {
            format!(" writes_in_flight={}", self.writes_in_flight_max)
        } else {
            String::new()
        }
    }

    /// `leader_placement` as the one-line description spells it.
    fn placement_name(&self) -> &'static str {
        match self.leader_placement {
            crate::paxos::LeaderPlacement::Balanced => "balanced",
            crate::paxos::LeaderPlacement::Off => "off",
        }
    }

    /// The partitions: how often, how long, how many partial.
    fn fmt_partitions(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.partition_interval_ns_mean {
            Some(mean) => write!(
                f,
                " partition=~{}x{}..{}",
                duration(mean),
                duration(self.partition_duration_ns_min),
                duration(self.partition_duration_ns_max)
            )?,
            None => write!(f, " partition=off")?,
        }
        if self.partition_partial_ppm > 0 {
            write!(f, " partial={}", percent(self.partition_partial_ppm))?;
        }
        Ok(())
    }

    /// The checkpoint and truncation part of the one-line description.
    fn fmt_checkpoint(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.checkpoint;
        if c.is_on() {
            write!(
                f,
                " checkpoint={}i/{}B/{}+retry{}x{} fail={} damage={}",
                c.instance_count,
                c.applied_size,
                duration(c.interval_ns),
                duration(c.retry_ns),
                c.in_flight_count_max,
                percent(self.checkpoint_failure_ppm),
                percent(self.checkpoint_damage_ppm),
            )?;
            if self.transfer_truncated_reads {
                write!(f, " transfer=truncated-reads")?;
            }
        }
        if self.truncation.enabled {
            write!(
                f,
                " truncation={}-{}i",
                duration(self.truncation.interval_ns),
                self.truncation.catch_up_instances
            )?;
        }
        Ok(())
    }
}
