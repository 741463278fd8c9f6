//! The CPU topology: which CPUs are online, which share a physical core, which NUMA node each
//! belongs to. Read from `/sys/devices/system/cpu` and `/sys/devices/system/node`.

use super::{HostRoot, parse_cpulist};

/// CPUs, physical cores and NUMA nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// The CPUs online, ascending.
    pub online: Vec<usize>,
    /// Physical cores, each as its online CPUs (SMT siblings) ascending; ordered by their first
    /// CPU. Without SMT every core has one CPU.
    pub cores: Vec<Vec<usize>>,
    /// NUMA nodes by number. A machine (or kernel) without NUMA is one node, 0, holding every
    /// CPU online.
    pub nodes: Vec<Node>,
}

/// A NUMA node: a memory controller and the CPUs nearest to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub id: usize,
    /// Its online CPUs, ascending.
    pub cpus: Vec<usize>,
}

impl Topology {
    /// Reads the topology under `root`. Falls back, file by file: without `cpu/online` the
    /// `cpuN` directories count as online; without a CPU's `thread_siblings_list` it is a core
    /// of its own; without `node*` directories there is one node.
    pub fn read(root: &HostRoot) -> Topology {
        let online = root
            .sys("devices/system/cpu/online")
            .and_then(|text| parse_cpulist(&text))
            .unwrap_or_else(|| {
                root.sys_dir("devices/system/cpu")
                    .iter()
                    .filter_map(|name| name.strip_prefix("cpu")?.parse::<usize>().ok())
                    .collect()
            });
        let mut cores: Vec<Vec<usize>> = Vec::new();
        for &cpu in &online {
            if cores.iter().any(|core| core.contains(&cpu)) {
                continue;
            }
            let siblings = ["thread_siblings_list", "core_cpus_list"]
                .iter()
                .find_map(|file| {
                    root.sys(&format!("devices/system/cpu/cpu{cpu}/topology/{file}"))
                        .and_then(|text| parse_cpulist(&text))
                })
                .unwrap_or_default();
            let mut core: Vec<usize> = siblings
                .into_iter()
                .filter(|sibling| online.contains(sibling))
                .collect();
            if !core.contains(&cpu) {
                core = vec![cpu];
            }
            cores.push(core);
        }
        cores.sort();
        let mut nodes: Vec<Node> = root
            .sys_dir("devices/system/node")
            .iter()
            .filter_map(|name| {
                let id = name.strip_prefix("node")?.parse::<usize>().ok()?;
                let cpus = root
                    .sys(&format!("devices/system/node/{name}/cpulist"))
                    .and_then(|text| parse_cpulist(&text))?
                    .into_iter()
                    .filter(|cpu| online.contains(cpu))
                    .collect();
                Some(Node { id, cpus })
            })
            .collect();
        if nodes.is_empty() {
            nodes.push(Node {
                id: 0,
                cpus: online.clone(),
            });
        }
        nodes.sort_by_key(|node| node.id);
        Topology {
            online,
            cores,
            nodes,
        }
    }

    /// A topology that knows only CPU numbers: each CPU a core of its own, one node. What the
    /// plan assumes when `/sys` says nothing.
    pub fn flat(cpus: &[usize]) -> Topology {
        let mut online = cpus.to_vec();
        online.sort_unstable();
        online.dedup();
        Topology {
            cores: online.iter().map(|&cpu| vec![cpu]).collect(),
            nodes: vec![Node {
                id: 0,
                cpus: online.clone(),
            }],
            online,
        }
    }

    /// Whether any core runs more than one CPU (SMT, "hyper-threading", is on).
    pub fn smt(&self) -> bool {
        self.cores.iter().any(|core| core.len() > 1)
    }

    /// The CPUs of `cpu`'s physical core (itself included), or just `cpu` when unknown.
    pub fn siblings(&self, cpu: usize) -> Vec<usize> {
        self.cores
            .iter()
            .find(|core| core.contains(&cpu))
            .cloned()
            .unwrap_or_else(|| vec![cpu])
    }

    /// The NUMA node `cpu` belongs to.
    pub fn node_of(&self, cpu: usize) -> Option<usize> {
        self.nodes
            .iter()
            .find(|node| node.cpus.contains(&cpu))
            .map(|node| node.id)
    }

    pub fn node(&self, id: usize) -> Option<&Node> {
        self.nodes.iter().find(|node| node.id == id)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Writes `files` (path under the root, content) into a fresh directory.
    fn tree(name: &str, files: &[(&str, &str)]) -> HostRoot {
        let dir = std::env::temp_dir().join(format!("coregate-host-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (path, text) in files {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap_or(Path::new("/"))).unwrap();
            std::fs::write(path, text).unwrap();
        }
        HostRoot::at(&dir)
    }

    #[test]
    fn smt_siblings_and_nodes_are_read() {
        let root = tree(
            "smt",
            &[
                ("sys/devices/system/cpu/online", "0-3\n"),
                (
                    "sys/devices/system/cpu/cpu0/topology/thread_siblings_list",
                    "0,2\n",
                ),
                (
                    "sys/devices/system/cpu/cpu1/topology/thread_siblings_list",
                    "1,3\n",
                ),
                (
                    "sys/devices/system/cpu/cpu2/topology/thread_siblings_list",
                    "0,2\n",
                ),
                (
                    "sys/devices/system/cpu/cpu3/topology/thread_siblings_list",
                    "1,3\n",
                ),
                ("sys/devices/system/node/node0/cpulist", "0,2\n"),
                ("sys/devices/system/node/node1/cpulist", "1,3\n"),
            ],
        );
        let topology = Topology::read(&root);
        assert_eq!(topology.online, [0, 1, 2, 3]);
        assert_eq!(topology.cores, [vec![0, 2], vec![1, 3]]);
        assert!(topology.smt());
        assert_eq!(topology.siblings(3), [1, 3]);
        assert_eq!(topology.node_of(2), Some(0));
        assert_eq!(topology.node_of(3), Some(1));
        assert_eq!(topology.nodes.len(), 2);
    }

    #[test]
    fn missing_files_fall_back() {
        let root = tree(
            "bare",
            &[
                ("sys/devices/system/cpu/cpu0/x", ""),
                ("sys/devices/system/cpu/cpu1/x", ""),
            ],
        );
        let topology = Topology::read(&root);
        assert_eq!(topology, Topology::flat(&[0, 1]));
        assert!(!topology.smt());
        // Offline siblings are not part of a core.
        let root = tree(
            "offline",
            &[
                ("sys/devices/system/cpu/online", "0-1"),
                (
                    "sys/devices/system/cpu/cpu0/topology/thread_siblings_list",
                    "0,2",
                ),
            ],
        );
        assert_eq!(Topology::read(&root).cores, [vec![0], vec![1]]);
    }
}
