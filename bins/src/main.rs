//! The `coregate` command line: `run` (the daemon), `check` (validate and print the plan; with
//! `--topology`, held against the host), `upgrade` (replace the running daemon with the binary
//! now installed),
//! `reload` (ask a running coregate to reload, through its admin API) and `demo` (the quickstart,
//! with a built-in upstream).

mod demo;
mod reload;
mod upgrade;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use coregate_engine::config::{Config, Plan};
use coregate_engine::footprint::Footprint;
use coregate_engine::host::{HostFacts, HostRoot, Topology};
use coregate_engine::preflight::Preflight;
use coregate_engine::runtime::Server;
use coregate_engine::runtime::handover::{self, HandoverEvent, Takeover};
use coregate_engine::runtime::notify;
use coregate_engine::runtime::signals::{Signal, Signals};

#[derive(Parser)]
#[command(
    name = "coregate",
    version,
    about = "Thread-per-core io_uring HTTP/1.1 edge proxy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy in the foreground until SIGTERM or SIGINT (then drain and exit 0).
    /// SIGHUP reloads the file, SIGUSR1 reopens the access log, SIGUSR2 upgrades the binary.
    Run {
        /// The configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Offer the listening sockets on this unix socket, so that `coregate upgrade` (or
        /// SIGUSR2) can replace this process with a new binary without refusing a
        /// connection. The package's unit uses /run/coregate/upgrade.sock.
        #[arg(long, value_name = "PATH")]
        upgrade_socket: Option<PathBuf>,
        /// Take the listening sockets over from the coregate offering them at
        /// --upgrade-socket, serve, then have it drain: how an upgrade starts the new binary.
        #[arg(long, requires = "upgrade_socket")]
        takeover: bool,
    },
    /// Replace the running coregate with the binary now installed, refusing no connection:
    /// the new process takes the listening sockets over, serves, and the old one drains.
    /// Exits 0 once the new process serves.
    Upgrade {
        /// The running coregate's --upgrade-socket.
        #[arg(long, value_name = "PATH", default_value = DEFAULT_UPGRADE_SOCKET)]
        upgrade_socket: PathBuf,
    },
    /// Validate a configuration and print the plan; exit 0 if valid, 1 if not.
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// Also read the host (CPUs, SMT siblings, NUMA nodes, NICs and their interrupts,
        /// isolcpus/nohz_full, io_uring, limits, somaxconn, tcp_migrate_req) and print where
        /// it and the plan disagree, each warning saying what to change. Warnings do not
        /// change the exit status.
        #[arg(long)]
        topology: bool,
        /// Read `sys/` and `proc/` under DIR instead of the machine's `/sys` and `/proc` (a
        /// tree copied from another host); the plan then uses every CPU that tree has online.
        #[arg(long, value_name = "DIR")]
        host_root: Option<PathBuf>,
    },
    /// Ask a running coregate to reload its configuration file (POST /reload on its admin
    /// listener); prints the outcome, exits 0 when every shard runs the new configuration.
    Reload {
        /// The configuration file the running coregate was started with: its [admin] section
        /// says where the admin API listens and which token it wants.
        #[arg(long, short)]
        config: PathBuf,
        /// The admin API's address, instead of the one in the file.
        #[arg(long)]
        admin: Option<std::net::SocketAddr>,
        /// The admin token the running coregate wants, instead of the one in the file (when
        /// the new file rotates it, the daemon still expects the old one until it reloads).
        #[arg(long, env = "COREGATE_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Run the quickstart: coregate on 127.0.0.1:8080 in front of a built-in echo upstream.
    Demo {
        /// The configuration to use.
        #[arg(long, short, default_value = default_demo_config())]
        config: PathBuf,
    },
}

/// Where the package's unit has coregate offer its listeners for upgrades.
const DEFAULT_UPGRADE_SOCKET: &str = "/run/coregate/upgrade.sock";

fn default_demo_config() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../tuning/quickstart.toml")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check {
            config,
            topology,
            host_root,
        } => check(&config, topology, host_root.as_deref()),
        Command::Run {
            config,
            upgrade_socket,
            takeover,
        } => run(&config, None, upgrade_socket.as_deref(), takeover),
        Command::Upgrade { upgrade_socket } => match upgrade::request(&upgrade_socket) {
            Ok(message) => {
                print!("{message}");
                ExitCode::SUCCESS
            }
            Err(message) => {
                eprint!("{message}");
                ExitCode::FAILURE
            }
        },
        Command::Reload {
            config,
            admin,
            token,
        } => match reload::request(&config, admin, token.as_deref()) {
            Ok(message) => {
                print!("{message}");
                ExitCode::SUCCESS
            }
            Err(message) => {
                eprint!("{message}");
                ExitCode::FAILURE
            }
        },
        Command::Demo { config } => {
            let upstream = match demo::start() {
                Ok(upstream) => upstream,
                Err(err) => {
                    eprintln!(
                        "coregate demo: cannot start the demo upstream on {}: {err}",
                        demo::ADDR
                    );
                    return ExitCode::FAILURE;
                }
            };
            run(&config, Some(upstream), None, false)
        }
    }
}

/// `coregate check`: the plan, and with `--topology` the host and the warnings.
fn check(path: &Path, topology: bool, host_root: Option<&Path>) -> ExitCode {
    let loaded = match host_root {
        None => load(path),
        Some(dir) => load_for(path, &HostRoot::at(dir)),
    };
    let (config, plan) = match loaded {
        Ok(loaded) => loaded,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}: ok", config.origin.display());
    if topology {
        let root = host_root.map_or_else(HostRoot::live, HostRoot::at);
        let facts = HostFacts::read(&root);
        println!("{}", Preflight::new(&config, &plan, &facts));
    } else {
        println!("{plan}");
    }
    println!("{}", Footprint::of(&config));
    let (tls, warnings) = config.tls_report();
    if let Some(tls) = tls {
        println!("{tls}");
    }
    for warning in warnings {
        println!("warning: {warning}");
    }
    ExitCode::SUCCESS
}

/// Loads a configuration and plans it on the host under `root`, as if this process could use
/// every CPU that host has online.
fn load_for(path: &Path, root: &HostRoot) -> Result<(Config, Plan), String> {
    let config = Config::load(path).map_err(|errors| errors.to_string())?;
    let topology = Topology::read(root);
    if topology.online.is_empty() {
        return Err(format!(
            "{}: no CPU online in its sys/devices/system/cpu/online",
            root.sys_path("").display()
        ));
    }
    let plan = Plan::with_topology(&config, &topology, &topology.online)
        .map_err(|errors| errors.to_string())?;
    Ok((config, plan))
}

fn load(path: &Path) -> Result<(Config, Plan), String> {
    let config = Config::load(path).map_err(|errors| errors.to_string())?;
    let plan = Plan::for_config(&config).map_err(|errors| errors.to_string())?;
    Ok((config, plan))
}

fn run(
    path: &Path,
    demo: Option<demo::DemoUpstream>,
    upgrade_socket: Option<&Path>,
    takeover: bool,
) -> ExitCode {
    // Where this binary is now: after a package upgrade replaces it, the successor is started
    // from this path (and so is the new binary).
    let binary = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("coregate"));
    let (config, plan) = match load(path) {
        Ok(loaded) => loaded,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    };
    // Before any shard thread exists, so they all inherit the blocked mask.
    let signals = match Signals::block() {
        Ok(signals) => signals,
        Err(err) => {
            eprintln!("coregate: cannot block signals: {err}");
            return ExitCode::FAILURE;
        }
    };
    let grace = config.timeouts.drain;
    let config = Arc::new(config);
    // A second process on a live process's upgrade socket must take over, or not start: it
    // would share the ports. Checked before anything is bound.
    if let (Some(socket), false) = (upgrade_socket, takeover)
        && let Err(err) = handover::refuse_if_offered(socket)
    {
        eprintln!("coregate: {err}");
        return ExitCode::FAILURE;
    }
    // A takeover receives the running process's sockets before anything is bound.
    let taking_over = takeover;
    let mut takeover = match (takeover, upgrade_socket) {
        (true, Some(socket)) => match Takeover::connect(socket) {
            Ok(takeover) => Some(takeover),
            Err(err) => {
                eprintln!("coregate: {err}");
                return ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    let inherited = takeover
        .as_mut()
        .map(|takeover| std::mem::take(&mut takeover.inherited))
        .unwrap_or_default();
    let mut server = match Server::start_inheriting(config.clone(), &plan, inherited) {
        Ok(server) => server,
        Err(err) => {
            // Dropping the takeover tells the running process: it keeps serving.
            eprintln!("coregate: {err}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("coregate: {} shard(s) running", server.shard_count());
    for note in server.takeover_notes() {
        eprintln!("coregate: took over {note}");
    }
    for listener in &config.listeners {
        if let Some(addr) = server.listener_addr(&listener.name) {
            eprintln!("coregate: listener {:?} on http://{addr}", listener.name);
        }
    }
    if let Some(addr) = server.admin_addr() {
        eprintln!("coregate: admin API on http://{addr}");
    }
    if let Some(takeover) = takeover {
        match takeover.serving() {
            Ok(()) => eprintln!("coregate: serving; the old process drains"),
            // Both serve then; never leave the port to nobody.
            Err(err) => eprintln!("coregate: serving, but {err}"),
        }
    }
    let events = match upgrade_socket {
        Some(socket) => match server.offer_listeners(socket, taking_over) {
            Ok(events) => {
                eprintln!("coregate: upgrades on {}", socket.display());
                Some(events)
            }
            Err(err) => {
                eprintln!("coregate: {err}");
                server.shutdown(Duration::ZERO);
                server.wait();
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let _ = notify::ready();
    if let Some(demo) = &demo {
        eprintln!(
            "coregate: demo upstream on http://{} (try: curl -i http://127.0.0.1:8080/hello)",
            demo.addr()
        );
    }
    let relaunch = upgrade_socket.map(|socket| upgrade::Relaunch {
        binary,
        config: path.to_path_buf(),
        upgrade_socket: socket.to_path_buf(),
    });
    let mut successor: Option<upgrade::Successor> = None;
    loop {
        let mut upgrade_asked = None;
        match signals.wait(MAIN_LOOP_TICK) {
            Some(Signal::Terminate) | Some(Signal::Interrupt) => {
                let _ = notify::stopping();
                eprintln!("coregate: draining (up to {grace:?})");
                server.shutdown(grace);
                server.wait();
                eprintln!("coregate: stopped");
                return ExitCode::SUCCESS;
            }
            Some(Signal::Reload) => {
                let _ = notify::reloading();
                match server.reload() {
                    Ok(reloaded) => eprintln!("coregate: {reloaded} (SIGHUP)"),
                    Err(err) => eprintln!("coregate: {err}"),
                }
                let _ = notify::notify("READY=1");
            }
            Some(Signal::ReopenLogs) => {
                server.reopen_logs();
                eprintln!("coregate: reopening the access log (SIGUSR1)");
            }
            Some(Signal::Upgrade) => upgrade_asked = Some(None),
            None => {}
        }
        let event = events.as_ref().and_then(|events| events.try_recv().ok());
        match event {
            Some(HandoverEvent::UpgradeAsked(request)) => upgrade_asked = Some(Some(request)),
            Some(HandoverEvent::HandedOver { pid }) => {
                eprintln!("coregate: handed over to pid {pid}; draining (up to {grace:?})");
                let _ = notify::status(&format!("handed over to pid {pid}; draining"));
                if let Some(successor) = successor.take() {
                    successor.finish(&format!("done {pid}"));
                }
                server.shutdown(grace);
                server.wait();
                eprintln!("coregate: stopped");
                return ExitCode::SUCCESS;
            }
            Some(HandoverEvent::TakeoverFailed(why)) => {
                eprintln!("coregate: upgrade failed, still serving: {why}");
                if let Some(successor) = successor.take() {
                    successor.finish(&format!("failed {why}"));
                }
            }
            None => {}
        }
        if let Some(request) = upgrade_asked {
            match (&relaunch, &mut successor) {
                (None, _) => {
                    eprintln!("coregate: cannot upgrade: started without --upgrade-socket");
                }
                (Some(_), Some(running)) => {
                    eprintln!(
                        "coregate: an upgrade is already under way (pid {})",
                        running.pid()
                    );
                    if let Some(request) = request {
                        running.answer_later(request);
                    }
                }
                (Some(relaunch), None) => match relaunch.start() {
                    Ok(mut started) => {
                        eprintln!(
                            "coregate: upgrading: started {} (pid {})",
                            relaunch.binary.display(),
                            started.pid()
                        );
                        if let Some(request) = request {
                            started.answer_later(request);
                        }
                        successor = Some(started);
                    }
                    Err(err) => {
                        eprintln!("coregate: upgrade failed, still serving: {err}");
                        if let Some(request) = request {
                            request.answer(&format!("failed {err}"));
                        }
                    }
                },
            }
        }
        if let Some(why) = successor.as_mut().and_then(upgrade::Successor::exited) {
            eprintln!("coregate: upgrade failed, still serving: {why}");
            if let Some(successor) = successor.take() {
                successor.finish(&format!("failed {why}"));
            }
        }
    }
}

/// How often the main thread looks at the handover thread and the successor between signals.
const MAIN_LOOP_TICK: Duration = Duration::from_millis(100);
