//! Playing audio through a sound card with cpal: the default output device (or a named one), in
//! its own format. Audio is resampled to the device's rate and queued; the callback takes what is
//! queued and plays silence when nothing is.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample};

use super::capture::named_device;
use super::quiet;
use super::{resample, Audio};

/// A running output stream.
pub struct Player {
    _stream: cpal::Stream,
    name: String,
    sample_rate: u32,
    queue: Arc<Mutex<VecDeque<f32>>>,
    /// Set by cpal's error callback.
    lost: Arc<Mutex<Option<String>>>,
}

fn no_speaker(why: &str) -> anyhow::Error {
    anyhow!("no audio output: {why}; the answer is printed only (--speak-to FILE.wav writes the speech instead)")
}

/// Every output device of the default host, and whether it is the default.
pub fn output_devices() -> Result<Vec<(String, bool)>> {
    let _quiet = quiet::Guard::new();
    let host = cpal::default_host();
    let default_name = host.default_output_device().and_then(|d| d.name().ok());
    let devices = host.output_devices().map_err(|e| anyhow!("cannot list output devices: {e}"))?;
    Ok(devices
        .map(|device| {
            let name = device.name().unwrap_or_else(|_| "(unnamed)".into());
            let is_default = default_name.as_deref() == Some(name.as_str());
            (name, is_default)
        })
        .collect())
}

impl Player {
    /// Opens the named output device, or the default one.
    pub fn open(device_name: Option<&str>) -> Result<Self> {
        let _quiet = quiet::Guard::new();
        let host = cpal::default_host();
        let device = match device_name {
            None => host.default_output_device().ok_or_else(|| no_speaker("no audio output device was found"))?,
            Some(wanted) => named_device(host.output_devices(), "output", wanted)?,
        };
        let name = device.name().unwrap_or_else(|_| "(unnamed)".into());
        let unusable = |e: &dyn std::fmt::Display| no_speaker(&format!("the output device `{name}` cannot play ({e})"));
        let supported = device.default_output_config().map_err(|e| unusable(&e))?;
        let config = supported.config();
        let queue = Arc::new(Mutex::new(VecDeque::new()));
        let lost = Arc::new(Mutex::new(None));
        let (q, l) = (Arc::clone(&queue), Arc::clone(&lost));
        let stream = match supported.sample_format() {
            SampleFormat::I16 => build::<i16>(&device, &config, q, l),
            SampleFormat::I32 => build::<i32>(&device, &config, q, l),
            SampleFormat::U16 => build::<u16>(&device, &config, q, l),
            SampleFormat::F32 => build::<f32>(&device, &config, q, l),
            SampleFormat::F64 => build::<f64>(&device, &config, q, l),
            other => bail!("output device `{name}` plays {other} samples, which kioku cannot write"),
        }
        .map_err(|e| unusable(&e))?;
        stream.play().map_err(|e| unusable(&e))?;
        Ok(Self { _stream: stream, name, sample_rate: config.sample_rate.0, queue, lost })
    }

    /// Queues `audio` after what is already queued.
    pub fn play(&self, audio: &Audio) -> Result<()> {
        if let Some(why) = self.lost.lock().unwrap_or_else(PoisonError::into_inner).clone() {
            bail!("lost the output device `{}`: {why}", self.name);
        }
        let samples = resample(audio, self.sample_rate)?;
        self.queue.lock().unwrap_or_else(PoisonError::into_inner).extend(samples);
        Ok(())
    }

    /// What drops the queued audio not played yet, from any thread.
    pub fn stopper(&self) -> impl Fn() + Send + 'static {
        let queue = Arc::clone(&self.queue);
        move || queue.lock().unwrap_or_else(PoisonError::into_inner).clear()
    }

    /// Waits until everything queued has been handed to the device (at most `limit`).
    pub fn drain(&self, limit: Duration) {
        let start = Instant::now();
        while !self.queue.lock().unwrap_or_else(PoisonError::into_inner).is_empty() && start.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn build<T>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    queue: Arc<Mutex<VecDeque<f32>>>,
    lost: Arc<Mutex<Option<String>>>,
) -> Result<cpal::Stream, cpal::BuildStreamError>
where
    T: SizedSample + FromSample<f32>,
{
    let channels = usize::from(config.channels.max(1));
    device.build_output_stream(
        config,
        move |data: &mut [T], _: &cpal::OutputCallbackInfo| {
            let mut queue = queue.lock().unwrap_or_else(PoisonError::into_inner);
            for frame in data.chunks_mut(channels) {
                let sample = T::from_sample(queue.pop_front().unwrap_or(0.0));
                frame.fill(sample);
            }
        },
        move |err| {
            lost.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert_with(|| err.to_string());
        },
        None,
    )
}
