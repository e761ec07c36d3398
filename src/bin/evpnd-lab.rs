//! evpnd-lab: build a small EVPN fabric in network namespaces, check that
//! VMs on different hosts reach each other, show the state, tear down.
//!
//! Hosts run evpnd (full-mesh iBGP between them, or through an FRR route
//! reflector with `--frr`); each host has VMs (namespaces) in VNI 100.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use evpnd::testbed::{
    self, cleanup_own, cleanup_prefix, frr, Fabric, FabricBuilder, HostKind, RrKind,
};

/// Prefix of every namespace the lab creates (plus pid and a counter).
const PREFIX: &str = "evlab";
const VNI: u32 = 100;

/// Set by the signal handler: the main thread then leaves teardown to it.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

#[derive(Parser, Debug)]
#[command(name = "evpnd-lab", about = "Run evpnd in a namespace test fabric")]
struct Args {
    /// Number of VTEP hosts.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(2..=8))]
    hosts: u8,
    /// Peer through an FRR route reflector instead of a full mesh.
    #[arg(long, conflicts_with = "gobgp")]
    frr: bool,
    /// Peer through a GoBGP route reflector instead of a full mesh.
    #[arg(long)]
    gobgp: bool,
    /// VMs per host.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=16))]
    vms: u8,
    /// Leave the fabric running and print how to enter it.
    #[arg(long)]
    keep: bool,
    /// Remove everything an earlier `--keep` run left, then exit.
    #[arg(long)]
    cleanup: bool,
    /// Pings per VM pair.
    #[arg(long, default_value_t = 3)]
    count: u32,
    /// Seconds to wait for sessions and first pings.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Debug: FRR VTEPs instead of evpnd (checks the lab itself).
    #[arg(long, hide = true)]
    frr_vteps: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !testbed::is_root() {
        eprintln!("evpnd-lab: must run as root (network namespaces): sudo evpnd-lab ...");
        return ExitCode::from(2);
    }
    if args.cleanup {
        return cleanup();
    }
    let result = run(&args);
    if INTERRUPTED.load(Ordering::SeqCst) {
        // The handler tears down and exits; don't race it with errors
        // about namespaces it already removed.
        loop {
            std::thread::park();
        }
    }
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("evpnd-lab: {e}");
            ExitCode::from(2)
        }
    }
}

fn cleanup() -> ExitCode {
    match cleanup_prefix(PREFIX, true) {
        Ok(removed) => {
            for n in &removed {
                println!("removed namespace {n}");
            }
            remove_sockets(None);
            println!("cleaned up {} namespace(s)", removed.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("evpnd-lab --cleanup: {e}");
            ExitCode::from(2)
        }
    }
}

/// Remove evpnd control sockets of lab namespaces (of one pid, or all).
fn remove_sockets(pid: Option<u32>) {
    let Ok(rd) = std::fs::read_dir("/run/evpnd") else {
        return;
    };
    let want = match pid {
        Some(p) => format!("{PREFIX}{p}-"),
        None => PREFIX.to_string(),
    };
    for e in rd.flatten() {
        if e.file_name().to_string_lossy().starts_with(&want) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn evpnd_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    let bin = exe.with_file_name("evpnd");
    if !bin.exists() {
        return Err(format!(
            "{} not found: build it with `cargo build --release --bins`",
            bin.display()
        ));
    }
    if !exe.with_file_name("evpnctl").exists() {
        return Err(format!("evpnctl not found next to {}", exe.display()));
    }
    Ok(bin)
}

fn run(args: &Args) -> Result<bool, String> {
    let started = Instant::now();
    // Leftovers of lab runs that died without cleaning up.
    let stale = cleanup_prefix(PREFIX, false).map_err(|e| e.to_string())?;
    if !stale.is_empty() {
        println!(
            "removed {} stale namespace(s) of dead lab runs",
            stale.len()
        );
    }
    if args.frr && !frr::frr_installed() {
        return Err("--frr needs FRR: apt-get install frr".into());
    }
    if args.gobgp && !testbed::gobgp::gobgp_installed() {
        return Err("--gobgp needs GoBGP: apt-get install gobgpd".into());
    }
    if args.frr_vteps && !frr::frr_installed() {
        return Err("--frr-vteps needs FRR: apt-get install frr".into());
    }

    // Ctrl-C / SIGTERM: the guards on this thread won't run, so remove
    // what this process created by name (kills every daemon inside).
    ctrlc::set_handler(|| {
        INTERRUPTED.store(true, Ordering::SeqCst);
        eprintln!("\nevpnd-lab: interrupted, tearing down");
        let _ = cleanup_own(PREFIX);
        remove_sockets(Some(std::process::id()));
        std::process::exit(130);
    })
    .map_err(|e| format!("cannot install signal handler: {e}"))?;

    let rr = if args.frr {
        RrKind::Frr
    } else if args.gobgp {
        RrKind::GoBgp
    } else {
        RrKind::None
    };
    let mut b = FabricBuilder::new(PREFIX)
        .rr(rr)
        .vnis(&[VNI])
        .vms_per_host(usize::from(args.vms))
        .start_timeout(Duration::from_secs(args.timeout));
    if args.frr_vteps {
        b = b.hosts(HostKind::FrrVtep, usize::from(args.hosts));
    } else {
        b = b
            .hosts(HostKind::Evpnd, usize::from(args.hosts))
            .evpnd_binary(evpnd_binary()?);
    }
    println!(
        "building fabric: {} hosts ({}), {} VM(s) per host, VNI {VNI}, {}",
        args.hosts,
        if args.frr_vteps { "FRR VTEPs" } else { "evpnd" },
        args.vms,
        match rr {
            RrKind::None => "full-mesh iBGP",
            RrKind::Frr => "FRR route reflector",
            RrKind::GoBgp => "GoBGP route reflector",
        }
    );
    let mut fabric = b.build().map_err(|e| e.to_string())?;
    print_layout(&fabric);

    let outcome = exercise(&fabric, args, started);
    if outcome.is_err() {
        eprintln!("evpnd-lab: failed; last lines of the daemon logs:");
        fabric.dump_logs(30);
    }
    // --keep keeps a failed fabric too: that is when one wants to look.
    if args.keep {
        fabric.detach();
        print_keep_help(&fabric);
    }
    drop(fabric);
    Ok(outcome? == 0)
}

/// Wait for sessions, ping every VM pair, print state and a summary.
/// Returns the number of failed pings.
fn exercise(fabric: &Fabric, args: &Args, started: Instant) -> Result<usize, String> {
    let timeout = Duration::from_secs(args.timeout);
    fabric
        .wait_sessions(timeout)
        .map_err(|e| format!("BGP sessions: {e}"))?;
    println!("all BGP sessions Established ({:.1?})", started.elapsed());

    // Warm-up: the first packets of a pair may race route installation.
    for a in &fabric.vms {
        for b in &fabric.vms {
            if a.vni == b.vni && a.host != b.host {
                if let Err(e) = fabric.wait_ping(a, b, timeout) {
                    eprintln!("warning: {e}");
                }
            }
        }
    }
    let reports = fabric.ping_all(args.count).map_err(|e| e.to_string())?;
    let mut ok = 0;
    let mut failed = 0;
    println!("\n== pings ({} each) ==", args.count);
    for r in &reports {
        let good = r.result.ok();
        if good {
            ok += 1;
        } else {
            failed += 1;
        }
        println!(
            "{} {} -> {} ({}): {}/{} received, {:.0}% loss",
            if good { "ok  " } else { "FAIL" },
            r.from,
            r.to,
            r.to_ip,
            r.result.received,
            r.result.transmitted,
            r.result.loss_percent
        );
    }

    print_state(fabric);
    println!(
        "\n== summary ==\npings ok: {ok}, failed: {failed}, time: {:.1?}",
        started.elapsed()
    );

    Ok(failed)
}

fn print_layout(f: &Fabric) {
    println!("spine (underlay router{}): {}", rr_note(f), f.spine.name());
    for h in &f.hosts {
        println!(
            "host h{}: {} (VTEP {})",
            h.index + 1,
            h.ns.name(),
            h.vtep_ip
        );
    }
    for v in &f.vms {
        println!("vm {}: {} ({} {})", v.label(), v.ns.name(), v.ip, v.mac);
    }
}

fn rr_note(f: &Fabric) -> &'static str {
    match f.rr {
        RrKind::None => "",
        RrKind::Frr => ", FRR route reflector",
        RrKind::GoBgp => ", GoBGP route reflector",
    }
}

fn print_state(f: &Fabric) {
    for h in &f.hosts {
        println!("\n== host h{} ({}) ==", h.index + 1, h.ns.name());
        if let Some(e) = &h.evpnd {
            for what in ["vnis", "macs", "routes"] {
                println!("-- evpnctl show {what}");
                match e.evpnctl(&["show", what]) {
                    Ok(o) => {
                        print!("{}", String::from_utf8_lossy(&o.stdout));
                        eprint!("{}", String::from_utf8_lossy(&o.stderr));
                    }
                    Err(err) => println!("{err}"),
                }
            }
        }
        if let Some(fr) = &h.frr {
            for cmd in [
                "show evpn vni",
                "show evpn mac vni all",
                "show bgp l2vpn evpn",
            ] {
                println!("-- vtysh: {cmd}");
                match fr.vtysh(cmd) {
                    Ok(o) => print!("{o}"),
                    Err(err) => println!("{err}"),
                }
            }
        }
        println!("-- bridge fdb show");
        match h.ns.run(&["bridge", "fdb", "show"]) {
            Ok(o) => {
                // Skip the ports' multicast entries: noise.
                for l in String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter(|l| !(l.starts_with("33:33:") || l.starts_with("01:00:5e:")))
                {
                    println!("{l}");
                }
            }
            Err(err) => println!("{err}"),
        }
    }
}

fn print_keep_help(f: &Fabric) {
    println!("\nfabric left running (--keep). Enter a namespace with:");
    println!(
        "  ip netns exec {} bash    # spine{}",
        f.spine.name(),
        rr_note(f)
    );
    for h in &f.hosts {
        println!(
            "  ip netns exec {} bash    # host h{}",
            h.ns.name(),
            h.index + 1
        );
        if let Some(e) = &h.evpnd {
            println!(
                "    evpnctl --socket {} show neighbors",
                e.socket().display()
            );
        }
        if h.frr.is_some() {
            println!("    vtysh -N {}", h.ns.name());
        }
    }
    for v in &f.vms {
        println!("  ip netns exec {} bash    # vm {}", v.ns.name(), v.label());
    }
    println!("clean up with: evpnd-lab --cleanup");
}
