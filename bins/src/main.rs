//! The `coregate` command line: `run` (the daemon), `check` (validate and print the plan),
//! `reload` (ask a running coregate to reload, through its admin API) and `demo` (the quickstart,
//! with a built-in upstream).

mod demo;
mod reload;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use coregate_engine::config::{Config, Plan};
use coregate_engine::runtime::Server;
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
    Run {
        /// The configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration and print the plan; exit 0 if valid, 1 if not.
    Check {
        #[arg(long, short)]
        config: PathBuf,
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

fn default_demo_config() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../tuning/quickstart.toml")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match load(&config) {
            Ok((config, plan)) => {
                println!("{}: ok", config.origin.display());
                println!("{plan}");
                let (tls, warnings) = config.tls_report();
                if let Some(tls) = tls {
                    println!("{tls}");
                }
                for warning in warnings {
                    println!("warning: {warning}");
                }
                ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("{message}");
                ExitCode::FAILURE
            }
        },
        Command::Run { config } => run(&config, None),
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
            run(&config, Some(upstream))
        }
    }
}

fn load(path: &Path) -> Result<(Config, Plan), String> {
    let config = Config::load(path).map_err(|errors| errors.to_string())?;
    let plan = Plan::for_config(&config).map_err(|errors| errors.to_string())?;
    Ok((config, plan))
}

fn run(path: &Path, demo: Option<demo::DemoUpstream>) -> ExitCode {
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
    let server = match Server::start(config.clone(), &plan) {
        Ok(server) => server,
        Err(err) => {
            eprintln!("coregate: {err}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("coregate: {} shard(s) running", server.shard_count());
    for listener in &config.listeners {
        if let Some(addr) = server.listener_addr(&listener.name) {
            eprintln!("coregate: listener {:?} on http://{addr}", listener.name);
        }
    }
    if let Some(addr) = server.admin_addr() {
        eprintln!("coregate: admin API on http://{addr}");
    }
    if let Some(demo) = &demo {
        eprintln!(
            "coregate: demo upstream on http://{} (try: curl -i http://127.0.0.1:8080/hello)",
            demo.addr()
        );
    }
    loop {
        match signals.wait(Duration::from_secs(1)) {
            Some(Signal::Terminate) | Some(Signal::Interrupt) => {
                eprintln!("coregate: draining (up to {grace:?})");
                server.shutdown(grace);
                server.wait();
                eprintln!("coregate: stopped");
                return ExitCode::SUCCESS;
            }
            Some(Signal::Reload) => match server.reload() {
                Ok(reloaded) => eprintln!("coregate: {reloaded} (SIGHUP)"),
                Err(err) => eprintln!("coregate: {err}"),
            },
            None => {}
        }
    }
}
