//! evpnctl: query and control a running evpnd (see `evpnd::cli::evpnctl`).

fn main() -> std::process::ExitCode {
    evpnd::cli::evpnctl::main()
}
