//! The `millwright` binary: command line, settings and wiring. It holds no
//! logic of its own; every capability lives in a crate under `crates/`.

mod security;
mod serve;
mod streams;

use std::path::PathBuf;

/// jemalloc returns freed pages to the system (dirty and muzzy pages
/// decay within seconds), so memory used by a burst (a whole fleet
/// reconnecting) is given back once it is over; glibc's malloc keeps it.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "millwright",
    version,
    about = "A self-hosted IoT platform in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the platform.
    Serve(serve::ServeArgs),
    /// Create another admin API token offline (stop the server first).
    AdminToken {
        #[arg(long, default_value = "./millwright-data")]
        data_dir: PathBuf,
        /// A name for the token (shown in listings).
        #[arg(long, default_value = "admin")]
        name: String,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    #[command(flatten)]
    Api(api_client::cli::ApiCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Load-test an MQTT broker (this one or any other).
    Bench(bench::BenchArgs),
    /// Run simulated factory machines that speak the device contract.
    Simulate(simulator::SimulateArgs),
    /// Add or update a user in a password file (mosquitto_passwd format).
    Passwd {
        /// The password file (created if missing).
        file: PathBuf,
        /// The username.
        user: String,
        /// The password (read from MILLWRIGHT_PASSWORD when absent).
        #[arg(long, env = "MILLWRIGHT_PASSWORD", hide_env_values = true)]
        password: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::serve(args),
        Command::AdminToken {
            data_dir,
            name,
            config,
        } => serve::admin_token(&data_dir, &name, config.as_deref()),
        Command::Api(cmd) => {
            if let Err(f) = api_client::cli::run(cmd) {
                eprintln!("error: {}", f.message);
                std::process::exit(f.code);
            }
            Ok(())
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "millwright",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Bench(args) => run_bench(args),
        Command::Simulate(args) => {
            init_logging(
                if args.json { "warn" } else { "info" },
                settings::LogFormat::Text,
            );
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let json = args.json;
            let report = runtime.block_on(simulator::run(args))?;
            simulator::print_report(&report, json);
            Ok(())
        }
        Command::Passwd {
            file,
            user,
            password,
        } => passwd(&file, &user, &password),
    }
}

pub(crate) fn init_logging(level: &str, format: settings::LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        settings::LogFormat::Text => fmt
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        settings::LogFormat::Json => fmt.json().with_current_span(true).init(),
    }
}

fn run_bench(args: bench::BenchArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let json = args.json;
    let report = runtime.block_on(bench::run(args))?;
    bench::print_report(&report, json)?;
    Ok(())
}

fn passwd(file: &std::path::Path, user: &str, password: &str) -> anyhow::Result<()> {
    if user.is_empty() || user.contains(':') {
        anyhow::bail!("username must be non-empty and contain no ':'");
    }
    let existing = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    let salt: [u8; 12] = rand::random();
    let line = format!("{user}:{}", broker::hash_password(password, salt));
    let mut out: Vec<String> = existing
        .lines()
        .filter(|l| l.split_once(':').map(|(u, _)| u) != Some(user))
        .map(str::to_string)
        .collect();
    out.push(line);
    std::fs::write(file, out.join("\n") + "\n")
        .with_context(|| format!("cannot write {}", file.display()))?;
    Ok(())
}
