//! Fake `/sys` and `/proc` trees for `coregate check --topology`: a machine shape (cores,
//! threads, NUMA nodes), NICs with queues and interrupts, kernel settings and limits, written
//! as the files Linux shows, under a temporary directory. Starts as a healthy host (Linux 6.1,
//! somaxconn 4096, tcp_migrate_req 1, generous limits), so a test changes only what it checks.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use coregate_engine::host::HostRoot;

/// A fake host's tree, removed when dropped.
pub struct FakeHost {
    dir: PathBuf,
}

impl FakeHost {
    /// A host with `cores` physical cores of `threads` CPUs each, split evenly over `nodes`
    /// NUMA nodes, numbered as Linux numbers them: the first thread of every core (0..cores),
    /// then the second ones. No NIC yet.
    pub fn new(cores: usize, threads: usize, nodes: usize) -> FakeHost {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "coregate-fakehost-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let host = FakeHost { dir };
        let cpus = cores * threads;
        host.write(
            "sys/devices/system/cpu/online",
            &format!("0-{}\n", cpus - 1),
        );
        let siblings = |core: usize| -> Vec<usize> {
            (0..threads).map(|thread| core + thread * cores).collect()
        };
        for core in 0..cores {
            let list = join(&siblings(core));
            for cpu in siblings(core) {
                host.write(
                    &format!("sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list"),
                    &format!("{list}\n"),
                );
            }
        }
        let per_node = cores / nodes;
        for node in 0..nodes {
            let mut node_cpus: Vec<usize> = (node * per_node..(node + 1) * per_node)
                .flat_map(siblings)
                .collect();
            node_cpus.sort_unstable();
            host.write(
                &format!("sys/devices/system/node/node{node}/cpulist"),
                &format!("{}\n", join(&node_cpus)),
            );
        }
        host.write("proc/sys/kernel/osrelease", "6.1.0-18-amd64\n");
        host.write("proc/sys/kernel/io_uring_disabled", "0\n");
        host.write("proc/sys/net/core/somaxconn", "4096\n");
        host.write("proc/sys/net/ipv4/tcp_migrate_req", "1\n");
        host.write("proc/cmdline", "BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro\n");
        host.limits(1 << 20, None);
        host
    }

    /// Adds an up NIC on `node` with `queues` receive queues and one interrupt per `(irq,
    /// affinity)`, the affinity as `smp_affinity_list` writes it.
    pub fn nic(
        self,
        name: &str,
        node: Option<usize>,
        queues: usize,
        irqs: &[(u32, &str)],
    ) -> FakeHost {
        let base = format!("sys/class/net/{name}");
        self.write(&format!("{base}/operstate"), "up\n");
        let node = node.map_or_else(|| "-1".to_owned(), |n| n.to_string());
        self.write(&format!("{base}/device/numa_node"), &format!("{node}\n"));
        for queue in 0..queues {
            self.write(&format!("{base}/queues/rx-{queue}/rps_cpus"), "0\n");
            self.write(&format!("{base}/queues/tx-{queue}/xps_cpus"), "0\n");
        }
        for (irq, affinity) in irqs {
            self.write(&format!("{base}/device/msi_irqs/{irq}"), "msix\n");
            self.write(
                &format!("proc/irq/{irq}/smp_affinity_list"),
                &format!("{affinity}\n"),
            );
        }
        self
    }

    /// Sets `/proc/self/limits`: open files (soft and hard) and locked memory in bytes (`None`
    /// unlimited).
    pub fn limits(&self, nofile: u64, memlock: Option<u64>) {
        let memlock = memlock.map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
        self.write(
            "proc/self/limits",
            &format!(
                "Limit                     Soft Limit           Hard Limit           Units\n\
                 Max open files            {nofile:<20} {nofile:<20} files\n\
                 Max locked memory         {memlock:<20} {memlock:<20} bytes\n"
            ),
        );
    }

    /// Writes (or replaces) one file of the tree.
    pub fn write(&self, path: &str, text: &str) {
        let path = self.dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap_or(Path::new("/")))
            .expect("create a fake tree directory");
        std::fs::write(path, text).expect("write a fake tree file");
    }

    /// Removes one file of the tree.
    pub fn remove(&self, path: &str) {
        let _ = std::fs::remove_file(self.dir.join(path));
    }

    /// The directory holding `sys/` and `proc/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn root(&self) -> HostRoot {
        HostRoot::at(&self.dir)
    }
}

impl Drop for FakeHost {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn join(cpus: &[usize]) -> String {
    cpus.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
