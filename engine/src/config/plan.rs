//! [`Config`] + this machine -> [`Plan`]: which CPUs get a shard, what each shard opens, and
//! what it may use.
//!
//! Owns resolving `runtime.cores` against the CPUs this process may run on (its affinity mask,
//! so `taskset`, cgroup cpusets and container limits are honoured) and the per-shard budget.
//! Plans are computed on the control thread before any shard is pinned; the runtime spawns
//! and pins from [`Plan::shards`]. `Display` is what `coregate check` prints.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::cores::CpuList;
use super::units::Size;
use super::{Balance, Config, ConfigError, ConfigErrors, CoreSelection};

/// Where the shards run and what each one gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// One per selected CPU, in CPU order; `index` is the shard number.
    pub shards: Vec<ShardPlan>,
    /// The CPUs this process may run on, ascending.
    pub allowed: Vec<usize>,
    /// What each shard may use; the same for every shard.
    pub budget: ShardBudget,
    /// Each listener, opened once per shard.
    pub listeners: Vec<ListenerPlan>,
    pub upstreams: Vec<UpstreamPlan>,
    pub routes: usize,
    /// The configuration file.
    pub origin: PathBuf,
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
    /// Plans shards on the CPUs this process may run on now.
    pub fn for_config(config: &Config) -> Result<Plan, ConfigErrors> {
        match allowed_cpus() {
            Some(allowed) => Plan::with_cpus(config, &allowed),
            None => Err(cores_error(
                config,
                "cannot read this process's CPU affinity (sched_getaffinity failed)".into(),
            )),
        }
    }

    /// Plans shards as if this process could run on exactly `allowed`.
    pub fn with_cpus(config: &Config, allowed: &[usize]) -> Result<Plan, ConfigErrors> {
        let mut allowed = allowed.to_vec();
        allowed.sort_unstable();
        allowed.dedup();
        let cpus = match &config.runtime.cores {
            CoreSelection::All => allowed.clone(),
            CoreSelection::List(cpus) => {
                let missing: Vec<usize> = cpus
                    .iter()
                    .copied()
                    .filter(|cpu| allowed.binary_search(cpu).is_err())
                    .collect();
                if !missing.is_empty() {
                    let (noun, verb) = if missing.len() == 1 {
                        ("CPU", "is")
                    } else {
                        ("CPUs", "are")
                    };
                    return Err(cores_error(
                        config,
                        format!(
                            "{noun} {} {verb} not available to this process (it may use {})",
                            CpuList(&missing),
                            CpuList(&allowed)
                        ),
                    ));
                }
                cpus.clone()
            }
        };
        if cpus.is_empty() {
            return Err(cores_error(
                config,
                "this process may not run on any CPU".into(),
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

fn cores_error(config: &Config, message: String) -> ConfigErrors {
    ConfigErrors::from_vec(vec![ConfigError {
        origin: config.origin.display().to_string().into(),
        location: config.runtime.cores_at,
        key: "runtime.cores".into(),
        message: message.into(),
        found: None,
    }])
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shards = self.shards.len();
        let budget = &self.budget;
        writeln!(f, "config       {}", self.origin.display())?;
        writeln!(
            f,
            "shards       {shards}, pinned to CPU {} (this process may use CPU {})",
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
