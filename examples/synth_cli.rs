//! `cargo run --example synth_cli -- sample DIR` (same arguments as
//! `mailbackfs synth`), until the hidden CLI subcommand is wired.
fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    mailbackfs::synth::run_cli(&args)
}
