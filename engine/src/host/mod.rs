//! What this machine offers, as Linux tells it in `/sys` and `/proc`: the CPUs online, which of
//! them share a physical core (SMT siblings), the NUMA nodes ([`Topology`]); and, for
//! `coregate check --topology`, the network interfaces with their queues and interrupts, the
//! kernel's settings and this process's limits ([`HostFacts`]).
//!
//! Owns reading and parsing those files, nothing more: the plan picks CPUs from a
//! [`Topology`], and [`crate::preflight`] judges the facts against a plan. Every read goes
//! through a [`HostRoot`], so tests point it at fake trees. Missing files are normal (containers, older kernels, machines without NUMA), so
//! every fact is optional or falls back as its documentation says; nothing here fails.

mod cpu;
mod facts;

use std::path::{Path, PathBuf};

pub use cpu::{Node, Topology};
pub use facts::{HostFacts, Irq, Limit, Nic, UringProbe};

/// Where `/sys` and `/proc` are: the real ones, or a fake tree in a test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostRoot {
    sys: PathBuf,
    proc: PathBuf,
}

impl HostRoot {
    /// This machine: `/sys` and `/proc`.
    pub fn live() -> HostRoot {
        HostRoot {
            sys: PathBuf::from("/sys"),
            proc: PathBuf::from("/proc"),
        }
    }

    /// A fake tree: `dir/sys` and `dir/proc`.
    pub fn at(dir: &Path) -> HostRoot {
        HostRoot {
            sys: dir.join("sys"),
            proc: dir.join("proc"),
        }
    }

    /// Whether this is the machine itself (facts that no file holds, such as whether an
    /// io_uring can be set up, are only probed then).
    pub fn is_live(&self) -> bool {
        *self == HostRoot::live()
    }

    /// A path under `/sys`.
    pub fn sys_path(&self, relative: &str) -> PathBuf {
        self.sys.join(relative)
    }

    /// A path under `/proc`.
    pub fn proc_path(&self, relative: &str) -> PathBuf {
        self.proc.join(relative)
    }

    /// The text of a file under `/sys`, trimmed; `None` when it cannot be read.
    pub fn sys(&self, relative: &str) -> Option<String> {
        read_trimmed(&self.sys_path(relative))
    }

    /// The text of a file under `/proc`, trimmed; `None` when it cannot be read.
    pub fn proc(&self, relative: &str) -> Option<String> {
        read_trimmed(&self.proc_path(relative))
    }

    /// The names in a directory under `/sys`, sorted; empty when it cannot be read.
    pub fn sys_dir(&self, relative: &str) -> Vec<String> {
        list_dir(&self.sys_path(relative))
    }

    /// The names in a directory under `/proc`, sorted; empty when it cannot be read.
    pub fn proc_dir(&self, relative: &str) -> Vec<String> {
        list_dir(&self.proc_path(relative))
    }
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|text| text.trim().to_owned())
}

fn list_dir(path: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok())
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort_by(|a, b| natural_order(a, b));
    names
}

/// Orders `cpu2` before `cpu10` and `rx-2` before `rx-10`: by the text before the trailing
/// number, then by the number.
fn natural_order(a: &str, b: &str) -> std::cmp::Ordering {
    let split = |s: &str| {
        let digits = s.len() - s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let (stem, number) = s.split_at(s.len() - digits);
        (stem.to_owned(), number.parse::<u64>().ok())
    };
    split(a).cmp(&split(b)).then_with(|| a.cmp(b))
}

/// Parses a kernel CPU list (`/sys/devices/system/cpu/online`, `cpulist`,
/// `smp_affinity_list`): `"0-3,8,10-11"`, with the `"0-15:2/4"` stride form some kernels
/// write. An empty text is the empty list. `None` when the text is not a CPU list.
pub fn parse_cpulist(text: &str) -> Option<Vec<usize>> {
    let text = text.trim();
    let mut cpus = Vec::new();
    if text.is_empty() {
        return Some(cpus);
    }
    for item in text.split(',') {
        let item = item.trim();
        let (range, stride) = match item.split_once(':') {
            Some((range, stride)) => (range, Some(stride)),
            None => (item, None),
        };
        let (first, last) = match range.split_once('-') {
            Some((a, b)) => (a.parse::<usize>().ok()?, b.parse::<usize>().ok()?),
            None => {
                let cpu = range.parse::<usize>().ok()?;
                (cpu, cpu)
            }
        };
        if first > last || last > crate::config::MAX_CPU {
            return None;
        }
        // "a-b:used/group": from each group of `group` CPUs, the first `used`.
        let (used, group) = match stride {
            None => (1, 1),
            Some(stride) => {
                let (used, group) = stride.split_once('/')?;
                (used.parse::<usize>().ok()?, group.parse::<usize>().ok()?)
            }
        };
        if group == 0 || used == 0 {
            return None;
        }
        cpus.extend((first..=last).filter(|cpu| (cpu - first) % group < used));
    }
    cpus.sort_unstable();
    cpus.dedup();
    Some(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_cpu_lists_parse() {
        assert_eq!(parse_cpulist(""), Some(vec![]));
        assert_eq!(parse_cpulist("0\n"), Some(vec![0]));
        assert_eq!(
            parse_cpulist("0-3,8,10-11"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpulist("0-7:2/4"), Some(vec![0, 1, 4, 5]));
        assert_eq!(parse_cpulist("3-1"), None);
        assert_eq!(parse_cpulist("x"), None);
        assert_eq!(parse_cpulist("0-99999"), None);
    }

    #[test]
    fn directory_names_sort_by_their_number() {
        let mut names = vec!["cpu10", "cpu2", "cpufreq", "cpu1"];
        names.sort_by(|a, b| natural_order(a, b));
        assert_eq!(names, ["cpu1", "cpu2", "cpu10", "cpufreq"]);
    }
}
