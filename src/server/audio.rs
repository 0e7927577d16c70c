//! Audio as clients send it (WAV bytes, or base64 WAV inside JSON), decoded
//! to 16 kHz mono and checked against the server's limits.

use super::error::ApiError;
use crate::assistant::MIN_SAMPLES;
use crate::audio::{read_wav_from, resample_to_16k};
use base64::Engine;

/// WAV bytes to 16 kHz samples; `param` names the request field in errors.
pub fn decode_wav(bytes: &[u8], param: &'static str, max_audio_s: f64) -> Result<Vec<f32>, ApiError> {
    let audio = read_wav_from(bytes, "the audio").map_err(|e| ApiError::invalid(param, format!("{e:#}")))?;
    let seconds = audio.samples.len() as f64 / audio.sample_rate as f64;
    if seconds > max_audio_s {
        return Err(ApiError::invalid(param, format!("the audio is {seconds:.1} s long; this server takes at most {max_audio_s} s")));
    }
    let samples = resample_to_16k(&audio).map_err(|e| ApiError::invalid(param, format!("{e:#}")))?;
    if samples.len() < MIN_SAMPLES {
        return Err(ApiError::invalid(param, format!("the audio is too short to contain speech ({} samples at 16 kHz)", samples.len())));
    }
    Ok(samples)
}

/// `input_audio.data` of a chat message: base64 of WAV bytes.
pub fn decode_base64_wav(data: &str, max_audio_s: f64) -> Result<Vec<f32>, ApiError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| ApiError::invalid("messages", format!("input_audio.data is not valid base64: {e}")))?;
    decode_wav(&bytes, "messages", max_audio_s)
}
