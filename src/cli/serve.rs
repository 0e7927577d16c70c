use super::ModelSource;
use anyhow::{bail, Result};
use clap::Args;
use kioku::server::{NamedAdapter, ServerConfig};
use std::net::{IpAddr, SocketAddr};

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    model: ModelSource,
    /// Address to listen on. The default answers this machine only; another
    /// address exposes the assistant to the network (set --api-key then).
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Require `Authorization: Bearer KEY` on every endpoint but /health.
    #[arg(long, env = "KIOKU_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// A LoRA adapter directory served under NAME, applied at SCALE (default 1)
    /// to requests that name no adapters; requests pick adapters and scales
    /// with `"adapters": [{"id": NAME, "scale": S}]`. Repeatable.
    #[arg(long = "adapter", value_name = "NAME=DIR[:SCALE]")]
    adapters: Vec<NamedAdapter>,
    /// Requests that run on the model at once (each takes the CPU's cores in
    /// turn; more than 1 trades latency for throughput).
    #[arg(long, default_value_t = 1)]
    parallel: usize,
    /// Requests that may wait for a slot; past that the server answers 503.
    #[arg(long, default_value_t = 64)]
    queue: usize,
    /// Longest audio accepted, in seconds.
    #[arg(long, default_value_t = 300.0)]
    max_audio_s: f64,
    /// Largest request body, in MiB.
    #[arg(long, default_value_t = 25)]
    max_body_mb: usize,
    /// Allow `POST /adapters` to load adapter directories while serving.
    #[arg(long)]
    allow_adapter_loading: bool,
}

pub fn run(args: ServeArgs) -> Result<()> {
    if args.parallel == 0 {
        bail!("--parallel must be at least 1");
    }
    if args.max_audio_s.is_nan() || args.max_audio_s <= 0.0 {
        bail!("--max-audio-s must be positive, got {}", args.max_audio_s);
    }
    if args.max_body_mb == 0 {
        bail!("--max-body-mb must be at least 1");
    }
    let assistant = args.model.load(&[])?;
    assistant.warm_up()?;
    let config = ServerConfig {
        addr: SocketAddr::new(args.host, args.port),
        api_key: args.api_key.filter(|k| !k.is_empty()),
        adapters: args.adapters,
        parallel: args.parallel,
        queue: args.queue,
        max_audio_s: args.max_audio_s,
        max_body_bytes: args.max_body_mb << 20,
        allow_adapter_loading: args.allow_adapter_loading,
    };
    kioku::server::serve(assistant, args.model.model.clone(), config)
}
