//! Run-time device choice: `auto` takes the best accelerator compiled in and present.

use anyhow::{bail, Result};
use candle_core::{DType, Device};

pub fn parse_device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => {
            if !candle_core::utils::cuda_is_available() {
                bail!("this kioku was built without CUDA; rebuild with `--features cuda` or use --device cpu");
            }
            Ok(Device::new_cuda(0)?)
        }
        "metal" => {
            if !candle_core::utils::metal_is_available() {
                bail!("this kioku was built without Metal; rebuild with `--features metal` or use --device cpu");
            }
            Ok(Device::new_metal(0)?)
        }
        "auto" => Ok(if candle_core::utils::cuda_is_available() {
            Device::new_cuda(0).unwrap_or(Device::Cpu)
        } else if candle_core::utils::metal_is_available() {
            Device::new_metal(0).unwrap_or(Device::Cpu)
        } else {
            Device::Cpu
        }),
        other => bail!("unknown device `{other}`; expected auto, cpu, cuda or metal"),
    }
}

/// Compute dtype for a device: f32 on CPU (f16 matmuls are slow there), f16 on GPUs.
pub fn default_dtype(device: &Device) -> DType {
    if device.is_cpu() {
        DType::F32
    } else {
        DType::F16
    }
}

/// Fixes the number of CPU threads for the whole process (`RAYON_NUM_THREADS`,
/// else one per physical core). Call first thing in `main`, before any thread
/// starts: it sets environment variables. Without it candle counts the cores
/// on every matrix product by reading /proc/cpuinfo (1081 reads for a
/// 16-token answer), which cost decode 16% (72 -> 86 tok/s on 2 cores).
///
/// It also shortens the spinning of candle's own pool (which runs its
/// element-wise ops) to `CANDLE_POOL_SPINS`, unless
/// `CANDLE_BARRIER_POOL_SPIN_LIMIT` is already set.
pub fn fix_cpu_threads() -> usize {
    let threads = crate::model::cpu_pool::threads();
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", CANDLE_POOL_SPINS.to_string());
    }
    threads
}

/// Spins candle's pool helper makes after each element-wise op before it
/// sleeps (candle's default: 25 000, about a millisecond). The packed matrix
/// products run on kioku's own pool, so on two cores that spinning helper
/// took a share of a core from each of them: it held 14 % of the CPU time of
/// a 128-token prefill (perf). With 200, prefill of 64 / 128 / 512 tokens
/// went from 440–463 / 472–520 / 375–440 to 522–533 / 596–629 / 420–455
/// tok/s and decode after the chat prompt from 111–121 to 120–126 tok/s
/// (`anchor_probe`, three alternating runs each, release, 2026-12-07).
const CANDLE_POOL_SPINS: u32 = 200;
