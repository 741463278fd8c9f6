//! A plan held against the host it is to run on: what `coregate check --topology` prints.
//!
//! Owns the judgements, each a [`Finding`] that says what is wrong and what to change, and the
//! report's text. It reads nothing itself ([`crate::host`] reads the machine, or a fake tree in
//! a test) and plans nothing ([`Plan`] did): the same facts always give the same findings.
//!
//! What is checked, one [`Check`] each:
//! - two shards on SMT siblings of one physical core;
//! - shards on a NUMA node other than the NIC's;
//! - NIC interrupts landing on shard CPUs;
//! - fewer NIC receive queues than shards;
//! - too few file descriptors for the connection caps; too little locked memory for the
//!   executors' registered buffers;
//! - a kernel too old for the shards' rings, io_uring disabled, or a ring that cannot be set
//!   up (live machine only);
//! - listen backlogs above `net.core.somaxconn`; `net.ipv4.tcp_migrate_req` off;
//! - shards on CPUs outside `isolcpus` or `nohz_full` when the kernel was booted with them.

use std::fmt;

use crate::config::units::Size;
use crate::config::{Config, CpuList, Plan};
use crate::host::{HostFacts, Limit, Topology};

/// The oldest kernel whose io_uring has everything a shard's ring is set up with:
/// `IORING_SETUP_DEFER_TASKRUN` (6.1), `SINGLE_ISSUER` (6.0), provided-buffer rings and
/// multishot accept (5.19).
pub const MIN_KERNEL: (u32, u32) = (6, 1);

/// The kernel that added `net.ipv4.tcp_migrate_req`.
const MIGRATE_REQ_KERNEL: (u32, u32) = (5, 14);

/// Rings per glommio executor that register its I/O memory (main, poll and latency rings);
/// each registration pins the memory again against `RLIMIT_MEMLOCK`.
const GLOMMIO_RINGS: u64 = 3;

/// Descriptors a shard holds besides connections: its ring, its mailbox's eventfd, glommio's
/// rings and eventfds.
const FDS_PER_SHARD: u64 = 16;

/// Descriptors the process holds besides shards: standard streams, the admin listener and its
/// connections, the access log, the binary's own files.
const FDS_PER_PROCESS: u64 = 64;

/// Interrupts named in one finding; more are counted, not listed.
const IRQS_LISTED: usize = 6;

/// What a finding is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    SmtSiblings,
    NicNode,
    NicIrqs,
    NicQueues,
    Descriptors,
    LockedMemory,
    Kernel,
    UringDisabled,
    UringSetup,
    Backlog,
    MigrateReq,
    Isolation,
    Tick,
}

/// One warning: what is wrong, and what to change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub check: Check,
    pub message: String,
}

/// The plan, the host and what is wrong between them.
pub struct Preflight<'a> {
    pub plan: &'a Plan,
    pub facts: &'a HostFacts,
    pub findings: Vec<Finding>,
    /// Descriptors the configuration may use at its caps.
    pub descriptors: u64,
    /// Locked memory glommio registers, in bytes.
    pub locked: u64,
}

impl<'a> Preflight<'a> {
    /// Judges `plan` (made from `config`) against `facts`.
    pub fn new(config: &Config, plan: &'a Plan, facts: &'a HostFacts) -> Preflight<'a> {
        let shards = plan.shards.len() as u64;
        let per_shard_idle: u64 = plan
            .upstreams
            .iter()
            .map(|upstream| upstream.max_idle_per_shard as u64)
            .sum();
        let descriptors = shards
            * (2 * plan.budget.max_connections as u64
                + per_shard_idle
                + plan.listeners.len() as u64
                + FDS_PER_SHARD)
            + FDS_PER_PROCESS;
        let locked = shards * GLOMMIO_RINGS * config.runtime.glommio.io_memory as u64;
        let mut preflight = Preflight {
            plan,
            facts,
            findings: Vec::new(),
            descriptors,
            locked,
        };
        preflight.judge(config);
        preflight
    }

    fn warn(&mut self, check: Check, message: String) {
        self.findings.push(Finding { check, message });
    }

    fn judge(&mut self, config: &Config) {
        let cpus = self.plan.cpus();
        if let Some(topology) = &self.facts.topology {
            self.smt(topology, &cpus);
            self.numa(topology, &cpus);
        }
        self.irqs(&cpus);
        self.queues(cpus.len());
        self.limits(config);
        self.kernel();
        self.net();
        self.isolation(&cpus);
    }

    fn smt(&mut self, topology: &Topology, cpus: &[usize]) {
        let shared: Vec<String> = topology
            .cores
            .iter()
            .filter_map(|core| {
                let on: Vec<usize> = core.iter().copied().filter(|c| cpus.contains(c)).collect();
                (on.len() > 1).then(|| CpuList(&on).to_string())
            })
            .collect();
        if shared.is_empty() {
            return;
        }
        self.warn(
            Check::SmtSiblings,
            format!(
                "{} physical core{} run two shards on SMT siblings (CPU {}): siblings share a \
                 core's execution units and caches, so each shard runs at a fraction of a core \
                 and its latency follows the other's load. Write runtime.cores = \"physical\" \
                 (one shard per physical core; add \",^CPU\" for CPUs to keep free), or turn \
                 SMT off.",
                shared.len(),
                if shared.len() == 1 { "" } else { "s" },
                shared.join("; ")
            ),
        );
    }

    fn numa(&mut self, topology: &Topology, cpus: &[usize]) {
        if topology.nodes.len() < 2 {
            return;
        }
        let nics: Vec<(String, usize)> = self
            .facts
            .nics
            .iter()
            .filter(|nic| nic.up)
            .filter_map(|nic| Some((nic.name.clone(), nic.numa_node?)))
            .collect();
        for (name, node) in nics {
            let away: Vec<usize> = cpus
                .iter()
                .copied()
                .filter(|&cpu| topology.node_of(cpu).is_some_and(|n| n != node))
                .collect();
            if away.is_empty() {
                continue;
            }
            self.warn(
                Check::NicNode,
                format!(
                    "{} shard{} (CPU {}) run on another NUMA node than {name}, which is on \
                     node {node}: their packets and buffers cross the socket interconnect. \
                     Write runtime.cores = \"node{node}\" (or \"node{node},physical\") to keep \
                     every shard on the NIC's node.",
                    away.len(),
                    if away.len() == 1 { "" } else { "s" },
                    CpuList(&away)
                ),
            );
        }
    }

    fn irqs(&mut self, cpus: &[usize]) {
        let free: Vec<usize> = self
            .facts
            .topology
            .as_ref()
            .map_or(&self.plan.allowed, |topology| &topology.online)
            .iter()
            .copied()
            .filter(|cpu| !cpus.contains(cpu))
            .collect();
        let nics: Vec<_> = self
            .facts
            .nics
            .iter()
            .filter(|nic| nic.up)
            .cloned()
            .collect();
        for nic in nics {
            let landing: Vec<_> = nic
                .irqs
                .iter()
                .filter(|irq| irq.cpus.iter().any(|cpu| cpus.contains(cpu)))
                .collect();
            if landing.is_empty() {
                continue;
            }
            let mut listed: Vec<String> = landing
                .iter()
                .take(IRQS_LISTED)
                .map(|irq| format!("IRQ {} -> CPU {}", irq.number, CpuList(&irq.cpus)))
                .collect();
            if landing.len() > IRQS_LISTED {
                listed.push(format!("{} more", landing.len() - IRQS_LISTED));
            }
            let numbers: Vec<String> = landing.iter().map(|irq| irq.number.to_string()).collect();
            let advice = if free.is_empty() {
                "Every CPU runs a shard: keep some for the interrupts with runtime.exclude = \
                 \"0-1\" (see tuning/edge-irq-cores.toml), then steer the IRQs there."
                    .to_owned()
            } else {
                format!(
                    "Steer them to CPUs without a shard ({free}): stop irqbalance (or set \
                     IRQBALANCE_BANNED_CPULIST={shards}), then `for irq in {numbers}; do echo \
                     {free} > /proc/irq/$irq/smp_affinity_list; done`.",
                    free = CpuList(&free),
                    shards = CpuList(cpus),
                    numbers = numbers.join(" ")
                )
            };
            self.warn(
                Check::NicIrqs,
                format!(
                    "{} of {}'s {} interrupts land on shard CPUs ({}): a shard there loses the \
                     time the interrupt and its softirq take, and its tail latency follows the \
                     traffic. {advice}",
                    landing.len(),
                    nic.name,
                    nic.irqs.len(),
                    listed.join(", ")
                ),
            );
        }
    }

    fn queues(&mut self, shards: usize) {
        let few: Vec<(String, usize)> = self
            .facts
            .nics
            .iter()
            .filter(|nic| nic.up && nic.rx_queues > 0 && nic.rx_queues < shards)
            .map(|nic| (nic.name.clone(), nic.rx_queues))
            .collect();
        for (name, queues) in few {
            self.warn(
                Check::NicQueues,
                format!(
                    "{name} has {queues} receive queue{} for {shards} shards: the NIC's packet \
                     work runs on at most {queues} CPU{} and every packet for the other shards \
                     crosses cores. Raise them with `ethtool -L {name} combined {shards}` (if \
                     the NIC has that many), or spread the work with RPS \
                     (/sys/class/net/{name}/queues/rx-*/rps_cpus).",
                    if queues == 1 { "" } else { "s" },
                    if queues == 1 { "" } else { "s" },
                ),
            );
        }
    }

    fn limits(&mut self, config: &Config) {
        if let Some(Limit {
            soft: Some(soft),
            hard,
        }) = self.facts.nofile
            && soft < self.descriptors
        {
            let shards = self.plan.shards.len() as u64;
            let fits = (soft.saturating_sub(FDS_PER_PROCESS) / shards.max(1)) / 2;
            let raise = match hard {
                Some(hard) if hard < self.descriptors => format!(
                    " (the hard limit, {hard}, is below that too: raise it as root, or \
                     fs.nr_open)"
                ),
                _ => String::new(),
            };
            self.warn(
                Check::Descriptors,
                format!(
                    "this process may open {soft} files, but {} shards at \
                     runtime.max_connections = {} with an upstream socket each need about {}. \
                     Set LimitNOFILE={} in the unit (the package's unit sets 1048576) or \
                     `ulimit -n {}`{raise}; or lower runtime.max_connections to {}.",
                    shards,
                    config.runtime.max_connections,
                    self.descriptors,
                    self.descriptors.next_power_of_two(),
                    self.descriptors.next_power_of_two(),
                    fits.max(1)
                ),
            );
        }
        if let Some(Limit {
            soft: Some(soft), ..
        }) = self.facts.memlock
            && soft < self.locked
        {
            let suggested = format!("{}M", self.locked.div_ceil(1 << 20).next_power_of_two());
            self.warn(
                Check::LockedMemory,
                format!(
                    "this process may lock {} of memory, but each shard's glommio executor \
                     registers runtime.glommio.io_memory ({}) with {GLOMMIO_RINGS} rings: {} in \
                     all. Below that glommio logs a warning at start and runs without registered \
                     buffers (coregate's sockets do not use them). Set LimitMEMLOCK={} in the \
                     unit, or lower runtime.glommio.io_memory (1MiB is enough).",
                    Size(soft),
                    Size(config.runtime.glommio.io_memory as u64),
                    Size(self.locked),
                    suggested
                ),
            );
        }
    }

    fn kernel(&mut self) {
        if let Some(version) = self.facts.kernel_version()
            && version < MIN_KERNEL
        {
            self.warn(
                Check::Kernel,
                format!(
                    "kernel {} is older than {}.{}: shards set their rings up with deferred task \
                     work (6.1), a single issuer (6.0), provided-buffer rings and multishot \
                     accept (5.19), so they will not start. Run Linux {}.{} or later (Debian 12's \
                     6.1 is enough).",
                    self.facts.kernel.as_deref().unwrap_or("?"),
                    MIN_KERNEL.0,
                    MIN_KERNEL.1,
                    MIN_KERNEL.0,
                    MIN_KERNEL.1
                ),
            );
        }
        match self.facts.io_uring_disabled {
            Some(1) => self.warn(
                Check::UringDisabled,
                "kernel.io_uring_disabled = 1: only members of kernel.io_uring_group may set up \
                 an io_uring. Add coregate's user to that group, or `sysctl -w \
                 kernel.io_uring_disabled=0` (and in /etc/sysctl.d/)."
                    .into(),
            ),
            Some(2) => self.warn(
                Check::UringDisabled,
                "kernel.io_uring_disabled = 2: io_uring is off for every process, so no shard \
                 can start. `sysctl -w kernel.io_uring_disabled=0` (and in /etc/sysctl.d/)."
                    .into(),
            ),
            _ => {}
        }
        if let Some(probe) = &self.facts.uring {
            if let Some(error) = &probe.setup_error {
                let message = format!(
                    "an io_uring set up as a shard's is (single issuer, deferred task work) \
                     fails here: {error}. Shards will not start: check the kernel version, \
                     kernel.io_uring_disabled, and any seccomp filter (a container runtime's \
                     default profile blocks io_uring)."
                );
                self.warn(Check::UringSetup, message);
            } else if !probe.missing.is_empty() {
                let message = format!(
                    "this kernel's io_uring lacks operations coregate uses: {}. Run Linux {}.{} \
                     or later.",
                    probe.missing.join(", "),
                    MIN_KERNEL.0,
                    MIN_KERNEL.1
                );
                self.warn(Check::UringSetup, message);
            }
        }
    }

    fn net(&mut self) {
        if let Some(somaxconn) = self.facts.somaxconn {
            let capped: Vec<String> = self
                .plan
                .listeners
                .iter()
                .filter(|listener| listener.backlog > somaxconn)
                .map(|listener| format!("{} ({})", listener.name, listener.backlog))
                .collect();
            if !capped.is_empty() {
                let largest = self
                    .plan
                    .listeners
                    .iter()
                    .map(|listener| listener.backlog)
                    .max()
                    .unwrap_or(somaxconn);
                self.warn(
                    Check::Backlog,
                    format!(
                        "net.core.somaxconn is {somaxconn}, so the kernel cuts the backlog of \
                         listener {} to {somaxconn}. `sysctl -w net.core.somaxconn={largest}` \
                         (and in /etc/sysctl.d/), or lower their backlog.",
                        capped.join(", ")
                    ),
                );
            }
        }
        let old_kernel = self
            .facts
            .kernel_version()
            .is_some_and(|version| version < MIGRATE_REQ_KERNEL);
        match self.facts.tcp_migrate_req {
            Some(false) => self.warn(
                Check::MigrateReq,
                "net.ipv4.tcp_migrate_req is 0: when a listening socket closes (a reload that \
                 removes or changes a listener, an upgrade to fewer shards, a stop), the \
                 connections still in its queue are reset instead of moving to the other \
                 shards' sockets. `sysctl -w net.ipv4.tcp_migrate_req=1` (and in \
                 /etc/sysctl.d/)."
                    .into(),
            ),
            None if old_kernel => self.warn(
                Check::MigrateReq,
                "this kernel has no net.ipv4.tcp_migrate_req (Linux 5.14): connections queued \
                 on a listening socket that closes are reset. Run a newer kernel."
                    .into(),
            ),
            _ => {}
        }
    }

    fn isolation(&mut self, cpus: &[usize]) {
        for (check, name, list, what) in [
            (
                Check::Isolation,
                "isolcpus",
                &self.facts.isolated,
                "the scheduler's load balancing and unbound kernel work run there",
            ),
            (
                Check::Tick,
                "nohz_full",
                &self.facts.nohz_full,
                "the periodic scheduler tick interrupts them",
            ),
        ] {
            if list.is_empty() {
                continue;
            }
            let outside: Vec<usize> = cpus
                .iter()
                .copied()
                .filter(|cpu| !list.contains(cpu))
                .collect();
            if outside.is_empty() {
                continue;
            }
            let message = format!(
                "the kernel was booted with {name}={} but shards run on CPU {} outside it: {what}, \
                 unlike on the others. Put the shards inside it (runtime.cores = \"{}\"), or \
                 boot with {name} covering CPU {}.",
                CpuList(list),
                CpuList(&outside),
                CpuList(list),
                CpuList(cpus)
            );
            self.findings.push(Finding { check, message });
        }
    }
}

impl fmt::Display for Preflight<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.plan)?;
        self.write_topology(f)?;
        self.write_nics(f)?;
        self.write_kernel(f)?;
        self.write_limits(f)?;
        self.write_warnings(f)
    }
}

impl Preflight<'_> {
    /// Cores, SMT and NUMA nodes, with the shards on each node.
    fn write_topology(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let facts = self.facts;
        let cpus = self.plan.cpus();
        match &facts.topology {
            Some(topology) => {
                writeln!(
                    f,
                    "host         {} CPUs online, {} physical cores (SMT {}), {} NUMA node{}",
                    topology.online.len(),
                    topology.cores.len(),
                    if topology.smt() { "on" } else { "off" },
                    topology.nodes.len(),
                    if topology.nodes.len() == 1 { "" } else { "s" }
                )?;
                for node in &topology.nodes {
                    let here = node.cpus.iter().filter(|cpu| cpus.contains(cpu)).count();
                    writeln!(
                        f,
                        "  node {:<6} CPU {}: {}",
                        node.id,
                        CpuList(&node.cpus),
                        match here {
                            0 => "no shard".to_owned(),
                            1 => "1 shard".to_owned(),
                            n => format!("{n} shards"),
                        }
                    )?;
                }
            }
            None => writeln!(f, "host         no CPU topology in /sys")?,
        }
        Ok(())
    }

    /// Each NIC: state, NUMA node, queues and where its interrupts land.
    fn write_nics(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let facts = self.facts;
        if facts.nics.is_empty() {
            writeln!(f, "nics         none with a device in /sys/class/net")?;
        }
        for nic in &facts.nics {
            let mut irq_cpus: Vec<usize> =
                nic.irqs.iter().flat_map(|irq| irq.cpus.clone()).collect();
            irq_cpus.sort_unstable();
            irq_cpus.dedup();
            writeln!(
                f,
                "nic          {}: {}, NUMA node {}, {} receive queue{}, {} interrupt{} on CPU {}",
                nic.name,
                if nic.up { "up" } else { "down" },
                nic.numa_node
                    .map_or_else(|| "unknown".to_owned(), |node| node.to_string()),
                nic.rx_queues,
                if nic.rx_queues == 1 { "" } else { "s" },
                nic.irqs.len(),
                if nic.irqs.len() == 1 { "" } else { "s" },
                if irq_cpus.is_empty() {
                    "-".to_owned()
                } else {
                    CpuList(&irq_cpus).to_string()
                }
            )?;
        }
        Ok(())
    }

    /// The kernel and what its io_uring offers.
    fn write_kernel(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let facts = self.facts;
        let uring = match &facts.uring {
            None => "not probed (a recorded tree)".to_owned(),
            Some(probe) => match &probe.setup_error {
                Some(error) => format!("cannot be set up ({error})"),
                None if probe.missing.is_empty() => {
                    "a shard's ring sets up; every operation coregate uses is offered".to_owned()
                }
                None => format!("lacks {}", probe.missing.join(", ")),
            },
        };
        writeln!(
            f,
            "kernel       {}; io_uring: {uring}",
            facts.kernel.as_deref().unwrap_or("unknown")
        )?;
        Ok(())
    }

    /// CPU isolation, resource limits and the network settings the plan depends on.
    fn write_limits(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let facts = self.facts;
        let list = |cpus: &[usize]| {
            if cpus.is_empty() {
                "none".to_owned()
            } else {
                format!("CPU {}", CpuList(cpus))
            }
        };
        writeln!(
            f,
            "isolation    isolcpus {}; nohz_full {}",
            list(&facts.isolated),
            list(&facts.nohz_full)
        )?;
        let limit = |limit: Option<Limit>, size: bool| match limit {
            None => "unknown".to_owned(),
            Some(Limit { soft, hard }) => {
                let show = |value: Option<u64>| match value {
                    None => "unlimited".to_owned(),
                    Some(n) if size => Size(n).to_string(),
                    Some(n) => n.to_string(),
                };
                format!("{} (hard {})", show(soft), show(hard))
            }
        };
        writeln!(
            f,
            "limits       open files {}, the plan needs about {}; locked memory {}, glommio \
             registers {}",
            limit(facts.nofile, false),
            self.descriptors,
            limit(facts.memlock, true),
            Size(self.locked)
        )?;
        writeln!(
            f,
            "net          somaxconn {}; tcp_migrate_req {}",
            facts
                .somaxconn
                .map_or_else(|| "unknown".to_owned(), |n| n.to_string()),
            match facts.tcp_migrate_req {
                Some(true) => "1",
                Some(false) => "0",
                None => "unknown",
            }
        )?;
        Ok(())
    }

    fn write_warnings(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.findings.is_empty() {
            return write!(f, "\nwarnings     none");
        }
        write!(
            f,
            "\nwarnings     {} (each says what to change)",
            self.findings.len()
        )?;
        for finding in &self.findings {
            write!(f, "\n  - {}", finding.message)?;
        }
        Ok(())
    }
}
