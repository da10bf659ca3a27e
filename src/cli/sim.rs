//! `kbwatch sim`: serve the simulated Defender API until interrupted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::sim::{Sim, SimConfig, SimQuota};

#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// Listen address. One that is not loopback is refused without --allow-remote.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Serve on a non-loopback --listen address: anyone who reaches it can get a token with the
    /// published client secret. For a lab network only.
    #[arg(long)]
    allow_remote: bool,
    /// Seed of the simulated fleet.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Devices in the fleet.
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// Serve HTTPS with a generated test CA, written to --ca-out.
    #[arg(long)]
    tls: bool,
    /// Where to write the test CA certificate (PEM) with --tls.
    #[arg(long, default_value = "kbwatch-sim-ca.pem")]
    ca_out: PathBuf,
    /// Quota per endpoint and minute (unlimited when absent).
    #[arg(long)]
    per_minute: Option<u32>,
    /// Quota per endpoint and hour (with --per-minute; default 60 × per-minute).
    #[arg(long)]
    per_hour: Option<u32>,
}

pub async fn run(args: SimArgs, cancel: CancellationToken) -> anyhow::Result<ExitCode> {
    let quota = args.per_minute.map(|per_minute| SimQuota {
        per_minute,
        per_hour: args.per_hour.unwrap_or(per_minute.saturating_mul(60)),
    });
    let config = SimConfig {
        seed: args.seed,
        devices: args.devices,
        tls: args.tls,
        listen: args.listen,
        allow_remote: args.allow_remote,
        quota,
        ..SimConfig::default()
    };
    let (client_id, client_secret) = (config.client_id.clone(), config.client_secret.clone());
    let sim = Sim::start(config).await?;
    if let Some(pem) = sim.ca_pem() {
        std::fs::write(&args.ca_out, pem)
            .with_context(|| format!("writing {}", args.ca_out.display()))?;
        println!("test CA written to {}", args.ca_out.display());
    }
    println!(
        "simulated Defender API listening on {} ({} devices, seed {}); base URL {}",
        sim.local_addr(),
        args.devices,
        args.seed,
        sim.base_url()
    );
    println!(
        "token endpoint: {}<tenant>/oauth2/v2.0/token  client_id={client_id} client_secret={client_secret}",
        sim.authority()
    );
    println!(
        "admin: GET {0}admin/truth, GET {0}admin/stats, POST {0}admin/evolve  \
         with Authorization: Bearer {1}",
        sim.base_url(),
        sim.admin_token()
    );
    cancel.cancelled().await;
    drop(sim);
    Ok(ExitCode::SUCCESS)
}
