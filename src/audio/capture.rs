//! Microphone capture with cpal: any input device, sample format, rate and channel count. The
//! audio callback mixes each buffer to mono and hands it over through a bounded queue with
//! `try_send`, so it never waits on the consumer; what does not fit is dropped and counted.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample};

use super::quiet;

/// Buffers the queue holds: seconds of audio at usual callback sizes, so a busy consumer loses
/// nothing while a stalled one costs bounded memory.
const QUEUE_BUFFERS: usize = 512;
/// A device that delivers nothing for this long is treated as lost.
const STALL: Duration = Duration::from_secs(3);

/// A running input stream.
pub struct Microphone {
    _stream: cpal::Stream,
    name: String,
    sample_rate: u32,
    buffers: Receiver<(Vec<f32>, Instant)>,
    /// Set by cpal's error callback.
    lost: Arc<Mutex<Option<String>>>,
    dropped: Arc<AtomicU64>,
}

/// The format a device records in by default.
#[derive(Debug, Clone)]
pub struct InputConfig {
    pub sample_rate: u32,
    pub channels: u16,
    pub sample_format: String,
}

impl fmt::Display for InputConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} Hz, {} channel(s), {}", self.sample_rate, self.channels, self.sample_format)
    }
}

#[derive(Debug, Clone)]
pub struct InputDevice {
    pub name: String,
    pub is_default: bool,
    /// Its default recording format, or why it cannot record.
    pub default_config: Result<InputConfig, String>,
}

fn no_microphone(why: &str) -> anyhow::Error {
    anyhow!("no microphone: {why}; use --input FILE.wav to listen to a recording instead")
}

/// Every input device of the default host, with its default recording format.
pub fn input_devices() -> Result<Vec<InputDevice>> {
    let _quiet = quiet::Guard::new();
    let host = cpal::default_host();
    let default_name = host.default_input_device().and_then(|d| d.name().ok());
    let devices = host.input_devices().map_err(|e| anyhow!("cannot list input devices: {e}"))?;
    Ok(devices
        .map(|device| {
            let name = device.name().unwrap_or_else(|_| "(unnamed)".into());
            let default_config = device
                .default_input_config()
                .map(|c| InputConfig {
                    sample_rate: c.sample_rate().0,
                    channels: c.channels(),
                    sample_format: c.sample_format().to_string(),
                })
                .map_err(|e| e.to_string());
            InputDevice { is_default: default_name.as_deref() == Some(name.as_str()), name, default_config }
        })
        .collect())
}

/// The device called `wanted` among `devices` (an input or output listing, as `kind` says).
pub(super) fn named_device<I: Iterator<Item = cpal::Device>>(
    devices: Result<I, cpal::DevicesError>,
    kind: &str,
    wanted: &str,
) -> Result<cpal::Device> {
    devices
        .map_err(|e| anyhow!("cannot list {kind} devices: {e}"))?
        .find(|d| d.name().is_ok_and(|n| n == wanted))
        .ok_or_else(|| anyhow!("no {kind} device is named `{wanted}`; `kioku devices` lists them"))
}

impl Microphone {
    /// Starts recording from the named input device, or the default one.
    pub fn open(device_name: Option<&str>) -> Result<Self> {
        let _quiet = quiet::Guard::new();
        let host = cpal::default_host();
        let device = match device_name {
            None => host.default_input_device().ok_or_else(|| no_microphone("no audio input device was found"))?,
            Some(wanted) => named_device(host.input_devices(), "input", wanted)?,
        };
        let name = device.name().unwrap_or_else(|_| "(unnamed)".into());
        let unusable = |e: &dyn fmt::Display| match device_name {
            None => no_microphone(&format!("the default input device `{name}` cannot record ({e})")),
            Some(_) => anyhow!("input device `{name}` cannot record: {e}"),
        };
        let supported = device.default_input_config().map_err(|e| match e {
            cpal::DefaultStreamConfigError::DeviceNotAvailable if device_name.is_none() => {
                no_microphone("no audio input device is available")
            }
            e => unusable(&e),
        })?;
        let config = supported.config();
        let (queue, buffers) = sync_channel(QUEUE_BUFFERS);
        let lost = Arc::new(Mutex::new(None));
        let dropped = Arc::new(AtomicU64::new(0));
        let parts = Handoff { queue, dropped: Arc::clone(&dropped), lost: Arc::clone(&lost) };
        let stream = match supported.sample_format() {
            SampleFormat::I8 => build::<i8>(&device, &config, parts),
            SampleFormat::I16 => build::<i16>(&device, &config, parts),
            SampleFormat::I32 => build::<i32>(&device, &config, parts),
            SampleFormat::I64 => build::<i64>(&device, &config, parts),
            SampleFormat::U8 => build::<u8>(&device, &config, parts),
            SampleFormat::U16 => build::<u16>(&device, &config, parts),
            SampleFormat::U32 => build::<u32>(&device, &config, parts),
            SampleFormat::U64 => build::<u64>(&device, &config, parts),
            SampleFormat::F32 => build::<f32>(&device, &config, parts),
            SampleFormat::F64 => build::<f64>(&device, &config, parts),
            other => bail!("input device `{name}` records {other} samples, which kioku cannot read"),
        }
        .map_err(|e| unusable(&e))?;
        stream.play().map_err(|e| unusable(&e))?;
        Ok(Self { _stream: stream, name, sample_rate: config.sample_rate.0, buffers, lost, dropped })
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Samples dropped so far because the queue was full.
    pub fn dropped_samples(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits for the next mono buffer and the instant it arrived; fails once the device is lost.
    pub fn read(&mut self) -> Result<(Vec<f32>, Instant)> {
        let lost = |why: &str| anyhow!("lost the input device `{}`: {why}", self.name);
        if let Some(why) = self.lost.lock().unwrap_or_else(PoisonError::into_inner).take() {
            return Err(lost(&why));
        }
        match self.buffers.recv_timeout(STALL) {
            Ok(buffer) => Ok(buffer),
            Err(RecvTimeoutError::Timeout) => Err(lost(&format!("no audio for {} s", STALL.as_secs()))),
            Err(RecvTimeoutError::Disconnected) => Err(lost("the stream closed")),
        }
    }
}

/// What the audio callbacks share with the [`Microphone`].
struct Handoff {
    queue: SyncSender<(Vec<f32>, Instant)>,
    dropped: Arc<AtomicU64>,
    lost: Arc<Mutex<Option<String>>>,
}

fn build<T>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    handoff: Handoff,
) -> Result<cpal::Stream, cpal::BuildStreamError>
where
    T: SizedSample,
    f32: FromSample<T>,
{
    let channels = usize::from(config.channels.max(1));
    let Handoff { queue, dropped, lost } = handoff;
    device.build_input_stream(
        config,
        move |data: &[T], _: &cpal::InputCallbackInfo| {
            let mono: Vec<f32> = data
                .chunks_exact(channels)
                .map(|frame| frame.iter().map(|s| s.to_sample::<f32>()).sum::<f32>() / channels as f32)
                .collect();
            let len = mono.len() as u64;
            if queue.try_send((mono, Instant::now())).is_err() {
                dropped.fetch_add(len, Ordering::Relaxed);
            }
        },
        move |err| {
            lost.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert_with(|| err.to_string());
        },
        None,
    )
}
