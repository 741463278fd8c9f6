//! [`Config`] + this machine -> [`Plan`]: which CPUs get a shard, what each shard opens, and
//! what it may use.
//!
//! Owns resolving `runtime.cores` against the machine's topology (physical cores, NUMA nodes,
//! read by [`crate::host`]) and the CPUs this process may run on (its affinity mask, so
//! `taskset`, cgroup cpusets and container limits are honoured), and the per-shard budget.
//! Plans are computed on the control thread before any shard is pinned; the runtime spawns
//! and pins from [`Plan::shards`]. `Display` is what `coregate check` prints.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::cores::{CoreRule, CoreSet, CpuList};
use super::units::Size;
use super::{Balance, Config, ConfigError, ConfigErrors, CoreSelection, Written};
use crate::host::{HostRoot, Topology};

/// Where the shards run and what each one gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// One per selected CPU, in CPU order; `index` is the shard number.
    pub shards: Vec<ShardPlan>,
    /// The CPUs this process may run on, ascending.
    pub allowed: Vec<usize>,
    /// What `runtime.cores` (and `runtime.exclude`) asked for.
    pub selection: CoreSelection,
    /// What each shard may use; the same for every shard.
    pub budget: ShardBudget,
    /// Each listener, opened once per shard.
    pub listeners: Vec<ListenerPlan>,
    pub upstreams: Vec<UpstreamPlan>,
    pub routes: usize,
    /// The configuration file.
    pub origin: PathBuf,
    /// The profiles it starts from, the one it names first.
    pub profiles: Vec<PathBuf>,
}

/// One shard: an executor pinned to one CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardPlan {
    /// 0-based shard number.
    pub index: usize,
    /// The CPU it is pinned to.
    pub cpu: usize,
}

/// What one shard may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardBudget {
    pub ring_entries: u32,
    pub buffer_size: usize,
    pub buffers: usize,
    pub max_connections: usize,
    /// glommio's registered I/O memory for the shard's executor.
    pub glommio_io_memory: usize,
}

impl ShardBudget {
    /// Bytes of I/O buffers: reserved at start, touched as they are used.
    pub fn buffer_bytes(&self) -> u64 {
        self.buffers as u64 * self.buffer_size as u64
    }
}

/// A listener: one `SO_REUSEPORT` socket per shard on the same address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerPlan {
    pub name: Box<str>,
    pub bind: SocketAddr,
    pub backlog: u32,
    /// Sockets opened: one per shard.
    pub sockets: usize,
}

/// An upstream as the shards will see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamPlan {
    pub name: Box<str>,
    pub endpoints: usize,
    pub balance: Balance,
    /// Most idle pooled connections one shard keeps to this upstream (all endpoints).
    pub max_idle_per_shard: usize,
}

impl Plan {
    /// Plans shards on the CPUs this process may run on now, on this machine's topology.
    pub fn for_config(config: &Config) -> Result<Plan, ConfigErrors> {
        let Some(allowed) = allowed_cpus() else {
            return Err(cores_error(
                config,
                "cannot read this process's CPU affinity (sched_getaffinity failed)".into(),
                Blame::Cores,
            ));
        };
        let topology = Topology::read(&HostRoot::live());
        Plan::with_topology(config, &topology, &allowed)
    }

    /// Plans shards as if this process could run on exactly `allowed`, each CPU a core of its
    /// own on one NUMA node.
    pub fn with_cpus(config: &Config, allowed: &[usize]) -> Result<Plan, ConfigErrors> {
        Plan::with_topology(config, &Topology::flat(allowed), allowed)
    }

    /// Plans shards on `topology`, as if this process could run on exactly `allowed`. A
    /// topology that knows no CPU (no `/sys`) counts as [`Topology::flat`].
    pub fn with_topology(
        config: &Config,
        topology: &Topology,
        allowed: &[usize],
    ) -> Result<Plan, ConfigErrors> {
        let mut allowed = allowed.to_vec();
        allowed.sort_unstable();
        allowed.dedup();
        let flat;
        let topology = if topology.online.is_empty() {
            flat = Topology::flat(&allowed);
            &flat
        } else {
            topology
        };
        let cpus = match &config.runtime.cores {
            CoreSelection::All => allowed.clone(),
            CoreSelection::List(cpus) => {
                let missing = not_allowed(cpus, &allowed);
                if !missing.is_empty() {
                    return Err(cores_error(
                        config,
                        unavailable(&missing, &allowed),
                        Blame::Cores,
                    ));
                }
                cpus.clone()
            }
            CoreSelection::Rule(rule) => {
                resolve(rule, topology, &allowed).map_err(|(message, blame)| {
                    let mut errors = cores_error(config, message, blame);
                    errors.quote_first(format!("\"{}\"", config.runtime.cores));
                    errors
                })?
            }
        };
        if cpus.is_empty() {
            return Err(cores_error(
                config,
                "this process may not run on any CPU".into(),
                Blame::Cores,
            ));
        }
        let shards: Vec<ShardPlan> = cpus
            .iter()
            .enumerate()
            .map(|(index, &cpu)| ShardPlan { index, cpu })
            .collect();
        let runtime = &config.runtime;
        Ok(Plan {
            allowed,
            selection: config.runtime.cores.clone(),
            budget: ShardBudget {
                ring_entries: runtime.ring_entries,
                buffer_size: runtime.buffer_size,
                buffers: runtime.buffers_per_shard,
                max_connections: runtime.max_connections,
                glommio_io_memory: runtime.glommio.io_memory,
            },
            listeners: config
                .listeners
                .iter()
                .map(|l| ListenerPlan {
                    name: l.name.clone(),
                    bind: l.bind,
                    backlog: l.backlog,
                    sockets: shards.len(),
                })
                .collect(),
            upstreams: config
                .upstreams
                .iter()
                .map(|u| UpstreamPlan {
                    name: u.name.clone(),
                    endpoints: u.endpoints.len(),
                    balance: u.balance,
                    max_idle_per_shard: u.endpoints.len() * u.max_idle_per_endpoint,
                })
                .collect(),
            routes: config.routes.len(),
            origin: config.origin.clone(),
            profiles: config.profiles.clone(),
            shards,
        })
    }

    /// The CPUs the shards are pinned to, ascending.
    pub fn cpus(&self) -> Vec<usize> {
        self.shards.iter().map(|s| s.cpu).collect()
    }
}

/// The CPUs the calling thread may run on, ascending, or `None` if the mask cannot be read.
fn allowed_cpus() -> Option<Vec<usize>> {
    let mut cpus: Vec<usize> = core_affinity::get_core_ids()?
        .into_iter()
        .map(|core| core.id)
        .collect();
    cpus.sort_unstable();
    Some(cpus)
}

/// Which key a problem with the selection is reported at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Blame {
    Cores,
    Exclude,
}

fn cores_error(config: &Config, message: String, blame: Blame) -> ConfigErrors {
    let runtime = &config.runtime;
    let (key, written) = match (blame, &runtime.exclude_at) {
        (Blame::Exclude, Some(at)) => ("runtime.exclude", Some(at)),
        _ => ("runtime.cores", runtime.cores_at.as_ref()),
    };
    let origin: Box<str> = written.map_or_else(
        || config.origin.display().to_string().into(),
        |at: &Written| at.origin.clone(),
    );
    ConfigErrors::from_vec(vec![ConfigError {
        origin,
        location: written.map(|at| at.location),
        key: key.into(),
        message: message.into(),
        found: None,
    }])
}

/// The CPUs of `cpus` that this process may not use.
fn not_allowed(cpus: &[usize], allowed: &[usize]) -> Vec<usize> {
    cpus.iter()
        .copied()
        .filter(|cpu| allowed.binary_search(cpu).is_err())
        .collect()
}

fn unavailable(missing: &[usize], allowed: &[usize]) -> String {
    let (noun, verb) = if missing.len() == 1 {
        ("CPU", "is")
    } else {
        ("CPUs", "are")
    };
    format!(
        "{noun} {} {verb} not available to this process (it may use {})",
        CpuList(missing),
        CpuList(allowed)
    )
}

/// The CPUs a rule selects: the union of its included sets (each CPU named must be one this
/// process may use; each node must exist and have such a CPU), one CPU per physical core when
/// asked (the lowest-numbered included one), minus the excluded sets.
fn resolve(
    rule: &CoreRule,
    topology: &Topology,
    allowed: &[usize],
) -> Result<Vec<usize>, (String, Blame)> {
    let mut chosen: Vec<usize> = Vec::new();
    for set in &rule.include {
        chosen.extend(set_cpus(set, topology, allowed, true).map_err(|m| (m, Blame::Cores))?);
    }
    chosen.sort_unstable();
    chosen.dedup();
    if rule.physical {
        let mut firsts: Vec<usize> = Vec::new();
        for &cpu in &chosen {
            let siblings = topology.siblings(cpu);
            if !siblings.iter().any(|sibling| firsts.contains(sibling)) {
                firsts.push(cpu);
            }
        }
        chosen = firsts;
    }
    let mut removed: Vec<usize> = Vec::new();
    for set in &rule.exclude {
        removed.extend(set_cpus(set, topology, allowed, false).map_err(|m| (m, Blame::Exclude))?);
    }
    chosen.retain(|cpu| !removed.contains(cpu));
    if chosen.is_empty() {
        let blame = if rule.exclude.is_empty() {
            Blame::Cores
        } else {
            Blame::Exclude
        };
        return Err((
            format!(
                "selects no CPU: nothing is left once CPU {} are taken away (this process may use \
                 CPU {})",
                CpuList(&removed),
                CpuList(allowed)
            ),
            blame,
        ));
    }
    Ok(chosen)
}

/// The CPUs of one set that this process may use. Included sets must name CPUs that exist
/// and may be used; excluded ones may name any.
fn set_cpus(
    set: &CoreSet,
    topology: &Topology,
    allowed: &[usize],
    included: bool,
) -> Result<Vec<usize>, String> {
    match set {
        CoreSet::All => Ok(allowed.to_vec()),
        CoreSet::Cpus(cpus) => {
            let missing = not_allowed(cpus, allowed);
            if included && !missing.is_empty() {
                return Err(unavailable(&missing, allowed));
            }
            Ok(cpus
                .iter()
                .copied()
                .filter(|cpu| !missing.contains(cpu))
                .collect())
        }
        CoreSet::Nodes(nodes) => {
            let mut cpus = Vec::new();
            for &id in nodes {
                let ids: Vec<usize> = topology.nodes.iter().map(|node| node.id).collect();
                let Some(node) = topology.node(id) else {
                    return Err(format!(
                        "NUMA node {id} does not exist on this machine (it has node {})",
                        CpuList(&ids)
                    ));
                };
                let usable: Vec<usize> = node
                    .cpus
                    .iter()
                    .copied()
                    .filter(|cpu| allowed.binary_search(cpu).is_ok())
                    .collect();
                if included && usable.is_empty() {
                    return Err(format!(
                        "NUMA node {id} has no CPU this process may use (node {id} is CPU {}; \
                         this process may use CPU {})",
                        CpuList(&node.cpus),
                        CpuList(allowed)
                    ));
                }
                cpus.extend(usable);
            }
            Ok(cpus)
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shards = self.shards.len();
        let budget = &self.budget;
        writeln!(f, "config       {}", self.origin.display())?;
        for profile in &self.profiles {
            writeln!(f, "profile      {}", profile.display())?;
        }
        let asked = match &self.selection {
            CoreSelection::Rule(_) => format!("cores = \"{}\"; ", self.selection),
            CoreSelection::All | CoreSelection::List(_) => String::new(),
        };
        writeln!(
            f,
            "shards       {shards}, pinned to CPU {} ({asked}this process may use CPU {})",
            CpuList(&self.cpus()),
            CpuList(&self.allowed)
        )?;
        writeln!(
            f,
            "io           io_uring, {} entries per shard",
            budget.ring_entries
        )?;
        writeln!(
            f,
            "buffers      {} x {} = {} per shard, {} in all (reserved, touched as used)",
            budget.buffers,
            Size(budget.buffer_size as u64),
            Size(budget.buffer_bytes()),
            Size(budget.buffer_bytes() * shards as u64)
        )?;
        writeln!(
            f,
            "executor     {} of glommio I/O memory per shard",
            Size(budget.glommio_io_memory as u64)
        )?;
        writeln!(
            f,
            "connections  up to {} clients per shard, {} in all",
            budget.max_connections,
            budget.max_connections * shards
        )?;
        writeln!(f, "listeners    {}", self.listeners.len())?;
        for l in &self.listeners {
            writeln!(
                f,
                "  {:<12} {:<22} {} SO_REUSEPORT socket{} (one per shard), backlog {}",
                l.name,
                l.bind.to_string(),
                l.sockets,
                if l.sockets == 1 { "" } else { "s" },
                l.backlog
            )?;
        }
        let endpoints: usize = self.upstreams.iter().map(|u| u.endpoints).sum();
        writeln!(
            f,
            "upstreams    {}, {endpoints} endpoint{}",
            self.upstreams.len(),
            if endpoints == 1 { "" } else { "s" }
        )?;
        for u in &self.upstreams {
            writeln!(
                f,
                "  {:<12} {} endpoint{}, {}, up to {} idle connections per shard",
                u.name,
                u.endpoints,
                if u.endpoints == 1 { "" } else { "s" },
                u.balance.as_str(),
                u.max_idle_per_shard
            )?;
        }
        write!(f, "routes       {}", self.routes)
    }
}
