//! evpnd: the BGP EVPN VTEP agent (see `evpnd::cli::evpnd`).

fn main() -> std::process::ExitCode {
    evpnd::cli::evpnd::main()
}
