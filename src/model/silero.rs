//! Silero VAD v6 (16 kHz): the probability that a 32 ms chunk of audio is speech.
//!
//! The network, as the silero-vad package's own reference defines it:
//! - each 512-sample chunk is prefixed with the previous chunk's last 64 samples and reflect-padded
//!   by 64 at the end (640 samples);
//! - a fixed STFT as a strided convolution (256-sample window, hop 128): 4 frames of 129 magnitudes;
//! - four 3-tap convolutions with ReLU (the 2nd and 3rd with stride 2) reduce them to one 128-vector;
//! - an LSTM cell carries 128 values of memory from chunk to chunk;
//! - ReLU, a 1×1 convolution and a sigmoid give the probability.
//!
//! [`SileroVad`] is immutable; the memory lives in [`SileroState`], one per stream. It always runs
//! on the CPU in f32: one chunk is about 0.7 M multiply-adds, less than a GPU launch costs.

use std::sync::Arc;

use anyhow::{ensure, Result};
use candle_core::{DType, Device, Tensor, D};

use super::weights::Weights;
use crate::audio::vad::{activity_of_probability, Activity, FrameDetector};

/// Samples per chunk at 16 kHz.
pub const CHUNK: usize = 512;
/// Samples carried over from the previous chunk.
const CONTEXT: usize = 64;
/// Reflect padding after the chunk, so the last STFT frame is whole.
const PAD: usize = 64;
const WINDOW: usize = 256;
const HOP: usize = 128;
const BINS: usize = WINDOW / 2 + 1;
const HIDDEN: usize = 128;

/// Every tensor of the network (names as in the silero-vad package's safetensors file) and its shape.
pub const TENSORS: [(&str, &[usize]); 15] = [
    ("stft_conv.weight", &[2 * BINS, 1, WINDOW]),
    ("conv1.weight", &[HIDDEN, BINS, 3]),
    ("conv1.bias", &[HIDDEN]),
    ("conv2.weight", &[64, HIDDEN, 3]),
    ("conv2.bias", &[64]),
    ("conv3.weight", &[64, 64, 3]),
    ("conv3.bias", &[64]),
    ("conv4.weight", &[HIDDEN, 64, 3]),
    ("conv4.bias", &[HIDDEN]),
    ("lstm_cell.weight_ih", &[4 * HIDDEN, HIDDEN]),
    ("lstm_cell.weight_hh", &[4 * HIDDEN, HIDDEN]),
    ("lstm_cell.bias_ih", &[4 * HIDDEN]),
    ("lstm_cell.bias_hh", &[4 * HIDDEN]),
    ("final_conv.weight", &[1, HIDDEN, 1]),
    ("final_conv.bias", &[1]),
];

/// A tensor claimed from `w`, as f32 on the CPU.
fn take_cpu(w: &Weights, name: &str, shape: &[usize]) -> Result<Tensor> {
    Ok(w.take(name, shape)?.to_device(&Device::Cpu)?.to_dtype(DType::F32)?)
}

struct Conv {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
}

impl Conv {
    fn load(w: &Weights, name: &str, out: usize, input: usize, stride: usize) -> Result<Self> {
        Ok(Self {
            weight: take_cpu(w, &format!("{name}.weight"), &[out, input, 3])?,
            bias: take_cpu(w, &format!("{name}.bias"), &[out])?,
            stride,
        })
    }

    fn forward_relu(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.conv1d(&self.weight, 1, self.stride, 1, 1)?;
        Ok(y.broadcast_add(&self.bias.reshape((1, (), 1))?)?.relu()?)
    }
}

/// The network's weights (tensors `vad.*` in a model file).
pub struct SileroVad {
    stft: Tensor,
    convs: [Conv; 4],
    /// Input and hidden weights side by side, (4·128, 2·128), and their summed biases: one matmul per chunk.
    lstm_weight: Tensor,
    lstm_bias: Tensor,
    out_weight: Tensor,
    out_bias: Tensor,
}

/// The per-stream memory: the LSTM's hidden and cell values, and the previous chunk's tail.
#[derive(Clone)]
pub struct SileroState {
    hidden: Tensor,
    cell: Tensor,
    context: Vec<f32>,
}

impl SileroState {
    pub fn new() -> Result<Self> {
        let zeros = Tensor::zeros((1, HIDDEN), DType::F32, &Device::Cpu)?;
        Ok(Self { hidden: zeros.clone(), cell: zeros, context: vec![0.0; CONTEXT] })
    }
}

impl SileroVad {
    /// Claims the network's tensors from `w` (already under the `vad` prefix); they are copied to the
    /// CPU as f32 whatever the weights' device.
    pub fn load(w: &Weights) -> Result<Self> {
        let take = |name: &str, shape: &[usize]| take_cpu(w, name, shape);
        let convs = [
            Conv::load(w, "conv1", HIDDEN, BINS, 1)?,
            Conv::load(w, "conv2", 64, HIDDEN, 2)?,
            Conv::load(w, "conv3", 64, 64, 2)?,
            Conv::load(w, "conv4", HIDDEN, 64, 1)?,
        ];
        let weight_ih = take("lstm_cell.weight_ih", &[4 * HIDDEN, HIDDEN])?;
        let weight_hh = take("lstm_cell.weight_hh", &[4 * HIDDEN, HIDDEN])?;
        let bias = (take("lstm_cell.bias_ih", &[4 * HIDDEN])? + take("lstm_cell.bias_hh", &[4 * HIDDEN])?)?;
        Ok(Self {
            stft: take("stft_conv.weight", &[2 * BINS, 1, WINDOW])?,
            convs,
            lstm_weight: Tensor::cat(&[weight_ih, weight_hh], 1)?.t()?.contiguous()?,
            lstm_bias: bias.unsqueeze(0)?,
            out_weight: take("final_conv.weight", &[1, HIDDEN, 1])?.reshape((HIDDEN, 1))?,
            out_bias: take("final_conv.bias", &[1])?,
        })
    }

    /// The speech probability of the next `CHUNK` samples of a stream, updating its state.
    pub fn probability(&self, chunk: &[f32], state: &mut SileroState) -> Result<f32> {
        ensure!(chunk.len() == CHUNK, "Silero VAD takes {CHUNK}-sample chunks, got {}", chunk.len());
        let mut input = Vec::with_capacity(CONTEXT + CHUNK + PAD);
        input.extend_from_slice(&state.context);
        input.extend_from_slice(chunk);
        // Reflect padding: the samples before the last one, mirrored.
        let n = input.len();
        for i in 0..PAD {
            input.push(input[n - 2 - i]);
        }
        state.context.copy_from_slice(&chunk[CHUNK - CONTEXT..]);

        let x = Tensor::from_vec(input, (1, 1, CONTEXT + CHUNK + PAD), &Device::Cpu)?;
        let spectrum = x.conv1d(&self.stft, 0, HOP, 1, 1)?;
        let (real, imaginary) = (spectrum.narrow(1, 0, BINS)?, spectrum.narrow(1, BINS, BINS)?);
        let mut x = (real.sqr()? + imaginary.sqr()?)?.sqrt()?;
        for conv in &self.convs {
            x = conv.forward_relu(&x)?;
        }
        // (1, 128, 1) after the strided convolutions: one step of the LSTM.
        let x = x.squeeze(D::Minus1)?;
        let gates = Tensor::cat(&[&x, &state.hidden], 1)?.matmul(&self.lstm_weight)?.broadcast_add(&self.lstm_bias)?;
        let gate = |i: usize| gates.narrow(1, i * HIDDEN, HIDDEN);
        let (input_gate, forget_gate) = (candle_nn::ops::sigmoid(&gate(0)?)?, candle_nn::ops::sigmoid(&gate(1)?)?);
        let (candidate, output_gate) = (gate(2)?.tanh()?, candle_nn::ops::sigmoid(&gate(3)?)?);
        state.cell = ((forget_gate * &state.cell)? + (input_gate * candidate)?)?;
        state.hidden = (output_gate * state.cell.tanh()?)?;
        let logit = state.hidden.relu()?.matmul(&self.out_weight)?.broadcast_add(&self.out_bias)?;
        Ok(candle_nn::ops::sigmoid(&logit)?.flatten_all()?.to_vec1::<f32>()?[0])
    }
}

/// Silero's speech probability as the endpointer's frame detector.
pub struct SileroDetector {
    model: Arc<SileroVad>,
    state: SileroState,
    threshold: f32,
}

impl SileroDetector {
    pub fn new(model: Arc<SileroVad>, threshold: f32) -> Result<Self> {
        Ok(Self { model, state: SileroState::new()?, threshold })
    }
}

impl FrameDetector for SileroDetector {
    fn frame_len(&self) -> usize {
        CHUNK
    }

    fn classify(&mut self, frame: &[f32], _in_speech: bool) -> Result<Activity> {
        Ok(activity_of_probability(self.model.probability(frame, &mut self.state)?, self.threshold))
    }
}
