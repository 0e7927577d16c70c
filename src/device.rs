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
/// starts: it sets an environment variable. Without it candle counts the cores
/// on every matrix product by reading /proc/cpuinfo (1081 reads for a
/// 16-token answer), which cost decode 16% (72 -> 86 tok/s on 2 cores).
pub fn fix_cpu_threads() -> usize {
    let threads = crate::model::cpu_pool::threads();
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    threads
}
