//! Everything `coregate check --topology` reads about the host besides the CPU topology: the
//! network interfaces (NUMA node, queues, interrupts and where they land), the kernel
//! (version, `isolcpus` / `nohz_full`, `io_uring_disabled`, `somaxconn`, `tcp_migrate_req`),
//! this process's descriptor and locked-memory limits, and, on the live machine only, whether
//! an io_uring set up the way shards set theirs up works.

use super::{HostRoot, Topology, parse_cpulist};

/// The facts, each `None` (or empty) when the host does not say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostFacts {
    pub topology: Option<Topology>,
    /// Physical network interfaces (those with a `device`), by name.
    pub nics: Vec<Nic>,
    /// CPUs the kernel keeps its scheduler's load balancing and housekeeping off
    /// (`/sys/devices/system/cpu/isolated`, from `isolcpus=`).
    pub isolated: Vec<usize>,
    /// CPUs running without the periodic tick (`/sys/devices/system/cpu/nohz_full`).
    pub nohz_full: Vec<usize>,
    /// `/proc/cmdline`.
    pub cmdline: Option<String>,
    /// `/proc/sys/kernel/osrelease`, like `6.1.0-18-amd64`.
    pub kernel: Option<String>,
    /// `kernel.io_uring_disabled`: 0 allowed, 1 only for a group, 2 nobody (Linux 6.6+).
    pub io_uring_disabled: Option<u32>,
    /// `net.core.somaxconn`: the kernel's cap on every listen backlog.
    pub somaxconn: Option<u32>,
    /// `net.ipv4.tcp_migrate_req` (Linux 5.14+): whether a closing `SO_REUSEPORT` socket's
    /// queued connections move to another socket of the group instead of being reset.
    pub tcp_migrate_req: Option<bool>,
    /// `Max open files` of `/proc/self/limits`.
    pub nofile: Option<Limit>,
    /// `Max locked memory` of `/proc/self/limits`, in bytes.
    pub memlock: Option<Limit>,
    /// An io_uring set up as a shard's is (live machine only).
    pub uring: Option<UringProbe>,
}

/// A resource limit: `None` is unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

/// A physical network interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nic {
    pub name: String,
    /// `operstate` is `up` (or `unknown`, which virtual and some physical NICs report).
    pub up: bool,
    /// The NUMA node its PCI device is attached to.
    pub numa_node: Option<usize>,
    /// Receive queues (`queues/rx-*`): how many ways RSS spreads incoming packets.
    pub rx_queues: usize,
    /// Its interrupts (MSI-X vectors) and where each may land.
    pub irqs: Vec<Irq>,
}

/// An interrupt and the CPUs it is delivered to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Irq {
    pub number: u32,
    /// `effective_affinity_list` when the kernel gives it (where the interrupt really lands),
    /// else `smp_affinity_list` (where it may land).
    pub cpus: Vec<usize>,
}

/// What setting up an io_uring the way a shard does showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UringProbe {
    /// Why the ring could not be set up, if it could not.
    pub setup_error: Option<String>,
    /// Operations coregate uses that the kernel does not offer.
    pub missing: Vec<&'static str>,
}

impl HostFacts {
    /// Reads every fact under `root`; probes io_uring only when `root` is the live machine.
    pub fn read(root: &HostRoot) -> HostFacts {
        let topology = Topology::read(root);
        let cmdline = root.proc("cmdline");
        // The kernel's own view in /sys first; the boot line for kernels that do not show it.
        let cpus_file = |path: &str, option: &str| {
            root.sys(path)
                .and_then(|text| parse_cpulist(&text))
                .or_else(|| boot_cpus(cmdline.as_deref()?, option))
                .unwrap_or_default()
        };
        HostFacts {
            topology: (!topology.online.is_empty()).then_some(topology),
            nics: read_nics(root),
            isolated: cpus_file("devices/system/cpu/isolated", "isolcpus"),
            nohz_full: cpus_file("devices/system/cpu/nohz_full", "nohz_full"),
            cmdline,
            kernel: root.proc("sys/kernel/osrelease"),
            io_uring_disabled: number(root.proc("sys/kernel/io_uring_disabled")),
            somaxconn: number(root.proc("sys/net/core/somaxconn")),
            tcp_migrate_req: number::<u32>(root.proc("sys/net/ipv4/tcp_migrate_req"))
                .map(|value| value != 0),
            nofile: root
                .proc("self/limits")
                .and_then(|text| limit(&text, "Max open files")),
            memlock: root
                .proc("self/limits")
                .and_then(|text| limit(&text, "Max locked memory")),
            uring: root.is_live().then(probe_uring),
        }
    }

    /// The kernel's version as `(major, minor)`.
    pub fn kernel_version(&self) -> Option<(u32, u32)> {
        let release = self.kernel.as_deref()?;
        let mut parts = release.split(|c: char| !c.is_ascii_digit());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some((major, minor))
    }
}

/// The CPUs of a boot option like `isolcpus=managed_irq,domain,2-7`: the flags before the
/// list are left out.
fn boot_cpus(cmdline: &str, option: &str) -> Option<Vec<usize>> {
    let value = cmdline
        .split_whitespace()
        .find_map(|word| word.strip_prefix(option)?.strip_prefix('='))?;
    let list: Vec<&str> = value
        .split(',')
        .skip_while(|item| item.bytes().any(|b| b.is_ascii_alphabetic()))
        .collect();
    parse_cpulist(&list.join(","))
}

fn number<T: std::str::FromStr>(text: Option<String>) -> Option<T> {
    text?.trim().parse().ok()
}

/// A line of `/proc/<pid>/limits`: `Max open files  1024  524288  files`.
fn limit(text: &str, name: &str) -> Option<Limit> {
    let line = text.lines().find(|line| line.starts_with(name))?;
    let mut values = line[name.len()..].split_whitespace();
    let value = |text: Option<&str>| -> Option<Option<u64>> {
        match text? {
            "unlimited" => Some(None),
            n => n.parse().ok().map(Some),
        }
    };
    Some(Limit {
        soft: value(values.next())?,
        hard: value(values.next())?,
    })
}

fn read_nics(root: &HostRoot) -> Vec<Nic> {
    let interrupts = root.proc("interrupts").unwrap_or_default();
    root.sys_dir("class/net")
        .into_iter()
        .filter(|name| root.sys_path(&format!("class/net/{name}/device")).exists())
        .map(|name| {
            let base = format!("class/net/{name}");
            let operstate = root.sys(&format!("{base}/operstate")).unwrap_or_default();
            let numa_node = root
                .sys(&format!("{base}/device/numa_node"))
                .and_then(|text| text.parse::<i64>().ok())
                .and_then(|node| usize::try_from(node).ok());
            let rx_queues = root
                .sys_dir(&format!("{base}/queues"))
                .iter()
                .filter(|queue| queue.starts_with("rx-"))
                .count();
            let mut numbers: Vec<u32> = root
                .sys_dir(&format!("{base}/device/msi_irqs"))
                .iter()
                .filter_map(|irq| irq.parse().ok())
                .collect();
            if numbers.is_empty() {
                numbers = irqs_named(&interrupts, &name);
            }
            let irqs = numbers
                .into_iter()
                .map(|number| Irq {
                    number,
                    cpus: irq_cpus(root, number),
                })
                .collect();
            Nic {
                up: operstate == "up" || operstate == "unknown",
                name,
                numa_node,
                rx_queues,
                irqs,
            }
        })
        .collect()
}

/// The interrupts of `/proc/interrupts` whose name mentions `nic` (`eth0-TxRx-3`), for NICs
/// whose driver lists no `msi_irqs`.
fn irqs_named(interrupts: &str, nic: &str) -> Vec<u32> {
    interrupts
        .lines()
        .filter(|line| {
            line.split_whitespace().last().is_some_and(|last| {
                last == nic
                    || last.starts_with(&format!("{nic}-"))
                    || last.contains(&format!("@{nic}"))
            })
        })
        .filter_map(|line| line.trim_start().split(':').next()?.trim().parse().ok())
        .collect()
}

fn irq_cpus(root: &HostRoot, irq: u32) -> Vec<usize> {
    ["effective_affinity_list", "smp_affinity_list"]
        .iter()
        .find_map(|file| {
            root.proc(&format!("irq/{irq}/{file}"))
                .and_then(|text| parse_cpulist(&text))
                .filter(|cpus| !cpus.is_empty())
        })
        .unwrap_or_default()
}

/// Sets up a small io_uring with the flags a shard uses (single issuer, deferred task work)
/// and asks which operations the kernel offers.
fn probe_uring() -> UringProbe {
    use io_uring::{IoUring, Probe, opcode};
    let ring: std::io::Result<IoUring> = IoUring::builder()
        .setup_single_issuer()
        .setup_coop_taskrun()
        .setup_taskrun_flag()
        .setup_defer_taskrun()
        .build(8);
    let ring = match ring {
        Ok(ring) => ring,
        Err(err) => {
            return UringProbe {
                setup_error: Some(err.to_string()),
                missing: Vec::new(),
            };
        }
    };
    let mut probe = Probe::new();
    if let Err(err) = ring.submitter().register_probe(&mut probe) {
        return UringProbe {
            setup_error: Some(format!("cannot ask which operations it offers: {err}")),
            missing: Vec::new(),
        };
    }
    let used: [(&'static str, u8); 10] = [
        ("accept", opcode::AcceptMulti::CODE),
        ("recv", opcode::Recv::CODE),
        ("send", opcode::Send::CODE),
        ("sendmsg", opcode::SendMsg::CODE),
        ("connect", opcode::Connect::CODE),
        ("close", opcode::Close::CODE),
        ("async_cancel", opcode::AsyncCancel::CODE),
        ("timeout", opcode::Timeout::CODE),
        ("read", opcode::Read::CODE),
        ("poll_add", opcode::PollAdd::CODE),
    ];
    UringProbe {
        setup_error: None,
        missing: used
            .iter()
            .filter(|(_, code)| !probe.is_supported(*code))
            .map(|(name, _)| *name)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_read_from_proc_self_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units\n\
                    Max open files            1024                 524288               files\n\
                    Max locked memory         8388608              unlimited            bytes\n";
        assert_eq!(
            limit(text, "Max open files"),
            Some(Limit {
                soft: Some(1024),
                hard: Some(524288)
            })
        );
        assert_eq!(
            limit(text, "Max locked memory"),
            Some(Limit {
                soft: Some(8388608),
                hard: None
            })
        );
        assert_eq!(limit(text, "Max processes"), None);
    }

    #[test]
    fn interrupts_are_found_by_name() {
        let text = "           CPU0       CPU1\n\
                    \x20 24:          0          0  PCI-MSI 1  eth0-TxRx-0\n\
                    \x20 25:          0          0  PCI-MSI 2  eth0-TxRx-1\n\
                    \x20 26:          0          0  PCI-MSI 3  eth10-TxRx-0\n\
                    \x20 27:          0          0  PCI-MSI 4  mlx5_comp0@eth0\n";
        assert_eq!(irqs_named(text, "eth0"), [24, 25, 27]);
    }

    #[test]
    fn boot_options_give_their_cpus() {
        let line = "BOOT_IMAGE=/vmlinuz ro isolcpus=managed_irq,domain,2-7,9 nohz_full=2-7";
        assert_eq!(boot_cpus(line, "isolcpus"), Some(vec![2, 3, 4, 5, 6, 7, 9]));
        assert_eq!(boot_cpus(line, "nohz_full"), Some(vec![2, 3, 4, 5, 6, 7]));
        assert_eq!(boot_cpus(line, "rcu_nocbs"), None);
    }

    #[test]
    fn kernel_versions_parse() {
        let facts = |release: &str| HostFacts {
            kernel: Some(release.into()),
            ..HostFacts::default()
        };
        assert_eq!(facts("6.1.0-18-amd64").kernel_version(), Some((6, 1)));
        assert_eq!(facts("5.15.0").kernel_version(), Some((5, 15)));
        assert_eq!(facts("x").kernel_version(), None);
    }

    #[test]
    fn the_live_machine_can_be_read() {
        let facts = HostFacts::read(&HostRoot::live());
        assert!(facts.topology.is_some());
        assert!(facts.kernel.is_some());
        // The tests run coregate's own rings, so the probe must work here.
        let probe = facts.uring.expect("probed on the live machine");
        assert_eq!(probe.setup_error, None);
    }
}
