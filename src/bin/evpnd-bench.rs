//! evpnd-bench: convergence, CPU, memory and latency of evpnd against FRR
//! and the kernel floor. See BENCHMARKS.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use evpnd::bench::{self, BenchOptions, Target};

#[derive(Parser, Debug)]
#[command(about = "Benchmark evpnd against FRR and the kernel floor (needs root)")]
struct Args {
    /// Remote MACs (type-2 routes), comma-separated list of sizes.
    #[arg(long, value_delimiter = ',', default_value = "10000")]
    macs: Vec<u32>,
    /// Remote VTEPs (one type-3 route each).
    #[arg(long, default_value_t = 100)]
    vteps: u32,
    /// VNIs (vxlan + bridge per VNI on each VTEP).
    #[arg(long, default_value_t = 10)]
    vnis: u32,
    /// Runs per target and size (medians are reported).
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Measure only these targets (repeat or comma-separate).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Target>,
    /// Local-MAC latency samples per run.
    #[arg(long, default_value_t = 10)]
    latency_samples: u32,
    /// Limit of each timed phase in seconds; slower runs are incomplete.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// evpnd binary (default: next to this one).
    #[arg(long)]
    evpnd: Option<PathBuf>,
    /// Print the full report as JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// No progress lines on stderr.
    #[arg(long, short)]
    quiet: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    for &m in &args.macs {
        if m == 0 || m > 4_000_000 {
            eprintln!("--macs {m}: 1..=4000000 per size");
            return ExitCode::from(2);
        }
    }
    // Daemon logs at info: debug logging per route would be measured too.
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "info");
    }
    let evpnd_bin = args.evpnd.unwrap_or_else(|| {
        std::env::current_exe()
            .map(|p| p.with_file_name("evpnd"))
            .unwrap_or_else(|_| PathBuf::from("evpnd"))
    });
    let opts = BenchOptions {
        macs: args.macs,
        vteps: args.vteps,
        vnis: args.vnis,
        runs: args.runs,
        only: args.only,
        latency_samples: args.latency_samples,
        timeout: Duration::from_secs(args.timeout),
        evpnd_bin,
        verbose: !args.quiet,
    };
    if !evpnd::testbed::is_root() {
        eprintln!("evpnd-bench needs root (network namespaces, FRR)");
        return ExitCode::from(2);
    }
    // Ctrl-C / SIGTERM (e.g. `timeout`): the guards on the bench thread
    // won't run, so remove this process's namespaces by name, which kills
    // the daemons and helper processes inside them.
    if let Err(e) = ctrlc::set_handler(|| {
        eprintln!("\nevpnd-bench: interrupted, tearing down");
        for prefix in ["bench", "benchinj"] {
            let _ = evpnd::testbed::cleanup_own(prefix);
        }
        std::process::exit(130);
    }) {
        eprintln!("evpnd-bench: cannot install signal handler: {e}");
        return ExitCode::FAILURE;
    }
    match bench::run(&opts) {
        Ok(rep) => {
            if args.json {
                match serde_json::to_string_pretty(&rep) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("JSON: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", bench::report::table(&rep));
            }
            if rep.results.iter().all(|r| r.complete()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            }
        }
        Err(e) => {
            eprintln!("evpnd-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
