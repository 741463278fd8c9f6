//! `coregate check --topology` against fake `/sys` and `/proc` trees: a healthy host gives no
//! warning, and each warning comes from the one fact that is wrong and says what to change.

use coregate_engine::config::{Config, Plan};
use coregate_engine::host::{HostFacts, UringProbe};
use coregate_engine::preflight::{Check, Finding, Preflight};
use coregate_tests::fakehost::FakeHost;

/// A configuration with `runtime` as its `[runtime]` body and one listener with `listener`
/// added to it.
fn config(runtime: &str, listener: &str) -> Config {
    let text = format!(
        "[runtime]\n{runtime}\n\n[[listener]]\nname = \"public\"\nbind = \"0.0.0.0:80\"\n{listener}\n"
    );
    Config::parse(&text, "t.toml").unwrap_or_else(|errors| panic!("{errors}"))
}

/// The plan of `config` on `facts`' host, using every CPU it has online.
fn plan(config: &Config, facts: &HostFacts) -> Plan {
    let topology = facts.topology.clone().expect("the fake host has CPUs");
    Plan::with_topology(config, &topology, &topology.online)
        .unwrap_or_else(|errors| panic!("{errors}"))
}

fn check_facts(config: &Config, facts: &HostFacts) -> Vec<Finding> {
    Preflight::new(config, &plan(config, facts), facts).findings
}

fn check(host: &FakeHost, runtime: &str, listener: &str) -> Vec<Finding> {
    check_facts(&config(runtime, listener), &HostFacts::read(&host.root()))
}

/// The message of the only finding, which must be of `kind`.
fn only(findings: Vec<Finding>, kind: Check) -> String {
    match &findings[..] {
        [finding] if finding.check == kind => finding.message.clone(),
        _ => panic!("expected one {kind:?} finding, got {findings:#?}"),
    }
}

/// Eight cores, SMT off, one node; eth0 with eight queues whose interrupts all go to CPU 0,
/// which the shards leave free.
fn healthy() -> FakeHost {
    let irqs: Vec<(u32, &str)> = (40..48).map(|irq| (irq, "0")).collect();
    FakeHost::new(8, 1, 1).nic("eth0", Some(0), 8, &irqs)
}

const SHARDS_OFF_CPU0: &str = "cores = \"all,^0\"";

#[test]
fn a_healthy_host_gives_no_warning() {
    let host = healthy();
    let config = config(SHARDS_OFF_CPU0, "");
    let facts = HostFacts::read(&host.root());
    let plan = plan(&config, &facts);
    let report = Preflight::new(&config, &plan, &facts);
    assert_eq!(report.findings, []);
    let text = report.to_string();
    for line in [
        "shards       7, pinned to CPU 1-7 (cores = \"all,^0\"; this process may use CPU 0-7)",
        "host         8 CPUs online, 8 physical cores (SMT off), 1 NUMA node",
        "  node 0      CPU 0-7: 7 shards",
        "nic          eth0: up, NUMA node 0, 8 receive queues, 8 interrupts on CPU 0",
        "kernel       6.1.0-18-amd64; io_uring: not probed (a recorded tree)",
        "isolation    isolcpus none; nohz_full none",
        "net          somaxconn 4096; tcp_migrate_req 1",
        "warnings     none",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}

#[test]
fn two_shards_on_smt_siblings() {
    // Four cores, two threads: CPU n and n+4 share a core.
    let host = FakeHost::new(4, 2, 1).nic("eth0", Some(0), 8, &[(40, "0")]);
    let message = only(check(&host, "cores = \"1-3,5-7\"", ""), Check::SmtSiblings);
    assert!(
        message.starts_with("3 physical cores run two shards on SMT siblings (CPU 1,5; 2,6; 3,7)"),
        "{message}"
    );
    assert!(
        message.contains("runtime.cores = \"physical\""),
        "{message}"
    );
    // One shard per physical core: no warning.
    assert_eq!(check(&host, "cores = \"physical,^0\"", ""), []);
}

#[test]
fn shards_on_another_numa_node_than_the_nic() {
    // Two nodes: CPUs 0-3 and 4-7; the NIC is on node 1.
    let host = FakeHost::new(8, 1, 2).nic("eth0", Some(1), 8, &[(40, "7")]);
    let message = only(check(&host, "cores = \"node0\"", ""), Check::NicNode);
    assert!(
        message.starts_with(
            "4 shards (CPU 0-3) run on another NUMA node than eth0, which is on node 1"
        ),
        "{message}"
    );
    assert!(message.contains("runtime.cores = \"node1\""), "{message}");
    assert_eq!(check(&host, "cores = \"node1,^7\"", ""), []);
}

#[test]
fn nic_interrupts_landing_on_shard_cpus() {
    let host = FakeHost::new(8, 1, 1).nic("eth0", Some(0), 8, &[(40, "0"), (41, "1"), (42, "2-3")]);
    let message = only(check(&host, SHARDS_OFF_CPU0, ""), Check::NicIrqs);
    assert!(
        message.starts_with(
            "2 of eth0's 3 interrupts land on shard CPUs (IRQ 41 -> CPU 1, IRQ 42 -> CPU 2-3)"
        ),
        "{message}"
    );
    assert!(
        message.contains("for irq in 41 42; do echo 0 > /proc/irq/$irq/smp_affinity_list; done"),
        "{message}"
    );
    assert!(
        message.contains("IRQBALANCE_BANNED_CPULIST=1-7"),
        "{message}"
    );
    // With a shard on every CPU, the advice is to keep some free first.
    let message = only(check(&host, "cores = \"all\"", ""), Check::NicIrqs);
    assert!(
        message.contains("keep some for the interrupts with runtime.exclude"),
        "{message}"
    );
}

#[test]
fn fewer_receive_queues_than_shards() {
    let host = FakeHost::new(8, 1, 1).nic("eth0", Some(0), 2, &[(40, "0")]);
    let message = only(check(&host, SHARDS_OFF_CPU0, ""), Check::NicQueues);
    assert!(
        message.starts_with("eth0 has 2 receive queues for 7 shards"),
        "{message}"
    );
    assert!(message.contains("ethtool -L eth0 combined 7"), "{message}");
}

#[test]
fn too_few_descriptors_for_the_connection_caps() {
    let host = healthy();
    host.limits(4096, None);
    let message = only(
        check(
            &host,
            &format!("{SHARDS_OFF_CPU0}\nmax_connections = 16384"),
            "",
        ),
        Check::Descriptors,
    );
    assert!(
        message.starts_with(
            "this process may open 4096 files, but 7 shards at runtime.max_connections = 16384"
        ),
        "{message}"
    );
    assert!(message.contains("Set LimitNOFILE=262144"), "{message}");
    assert!(
        message.contains("lower runtime.max_connections to 288"),
        "{message}"
    );
}

#[test]
fn too_little_locked_memory_for_the_executors() {
    let host = healthy();
    host.limits(1 << 20, Some(8 << 20));
    // The default io_memory, 10 MiB, registered with 3 rings on 7 shards: 210 MiB.
    let message = only(check(&host, SHARDS_OFF_CPU0, ""), Check::LockedMemory);
    assert!(message.contains("210 MiB in all"), "{message}");
    assert!(message.contains("LimitMEMLOCK=256M"), "{message}");
    assert_eq!(
        check(
            &host,
            &format!("{SHARDS_OFF_CPU0}\n[runtime.glommio]\nio_memory = \"256KiB\""),
            ""
        ),
        []
    );
}

#[test]
fn a_kernel_too_old_for_the_shards_rings() {
    let host = healthy();
    host.write("proc/sys/kernel/osrelease", "5.15.0-91-generic\n");
    let message = only(check(&host, SHARDS_OFF_CPU0, ""), Check::Kernel);
    assert!(
        message.starts_with("kernel 5.15.0-91-generic is older than 6.1"),
        "{message}"
    );
    assert!(message.contains("Run Linux 6.1 or later"), "{message}");
}

#[test]
fn io_uring_disabled_by_sysctl() {
    let host = healthy();
    host.write("proc/sys/kernel/io_uring_disabled", "2\n");
    let message = only(check(&host, SHARDS_OFF_CPU0, ""), Check::UringDisabled);
    assert!(
        message.contains("sysctl -w kernel.io_uring_disabled=0"),
        "{message}"
    );
}

#[test]
fn a_ring_that_cannot_be_set_up() {
    // Only probed on the live machine: here the probe's answer is given.
    let host = healthy();
    let config = config(SHARDS_OFF_CPU0, "");
    let mut facts = HostFacts::read(&host.root());
    facts.uring = Some(UringProbe {
        setup_error: Some("Operation not permitted (os error 1)".into()),
        missing: Vec::new(),
    });
    let message = only(check_facts(&config, &facts), Check::UringSetup);
    assert!(
        message.contains("fails here: Operation not permitted"),
        "{message}"
    );
    assert!(message.contains("seccomp"), "{message}");
    facts.uring = Some(UringProbe {
        setup_error: None,
        missing: vec!["accept"],
    });
    let message = only(check_facts(&config, &facts), Check::UringSetup);
    assert!(
        message.contains("lacks operations coregate uses: accept"),
        "{message}"
    );
}

#[test]
fn a_backlog_above_somaxconn() {
    let host = healthy();
    let message = only(
        check(&host, SHARDS_OFF_CPU0, "backlog = 8192"),
        Check::Backlog,
    );
    assert!(message.starts_with("net.core.somaxconn is 4096, so the kernel cuts the backlog of listener public (8192) to 4096"), "{message}");
    assert!(
        message.contains("sysctl -w net.core.somaxconn=8192"),
        "{message}"
    );
}

#[test]
fn queued_connections_would_be_reset_without_tcp_migrate_req() {
    let host = healthy();
    host.write("proc/sys/net/ipv4/tcp_migrate_req", "0\n");
    let message = only(check(&host, SHARDS_OFF_CPU0, ""), Check::MigrateReq);
    assert!(
        message.contains("sysctl -w net.ipv4.tcp_migrate_req=1"),
        "{message}"
    );
}

#[test]
fn shards_outside_isolcpus() {
    let host = healthy();
    host.write("sys/devices/system/cpu/isolated", "4-7\n");
    let message = only(check(&host, SHARDS_OFF_CPU0, ""), Check::Isolation);
    assert!(
        message.starts_with(
            "the kernel was booted with isolcpus=4-7 but shards run on CPU 1-3 outside it"
        ),
        "{message}"
    );
    assert!(message.contains("runtime.cores = \"4-7\""), "{message}");
    assert_eq!(check(&host, "cores = \"4-7\"", ""), []);
}

#[test]
fn shards_outside_nohz_full() {
    // Read from the boot line when /sys does not say.
    let host = healthy();
    host.write("proc/cmdline", "BOOT_IMAGE=/vmlinuz ro nohz_full=2-7\n");
    let message = only(check(&host, SHARDS_OFF_CPU0, ""), Check::Tick);
    assert!(
        message.starts_with(
            "the kernel was booted with nohz_full=2-7 but shards run on CPU 1 outside it"
        ),
        "{message}"
    );
}
