//! Audio as clients send it (WAV or MP3 bytes, or base64 of them inside
//! JSON), decoded to 16 kHz mono and checked against the server's limits.

use super::error::ApiError;
use crate::assistant::MIN_SAMPLES;
use crate::audio::{looks_like_mp3, read_mp3, read_wav_from, resample_to_16k};
use base64::Engine;

/// WAV or MP3 bytes (told apart by their first bytes) to 16 kHz samples;
/// `param` names the request field in errors.
pub fn decode_audio(bytes: &[u8], param: &'static str, max_audio_s: f64) -> Result<Vec<f32>, ApiError> {
    let audio = if looks_like_mp3(bytes) {
        read_mp3(bytes, max_audio_s, "the audio")
    } else {
        read_wav_from(bytes, "the audio")
    };
    let audio = audio.map_err(|e| ApiError::invalid(param, format!("{e:#} (send WAV or MP3)")))?;
    let seconds = audio.samples.len() as f64 / audio.sample_rate as f64;
    if seconds > max_audio_s {
        return Err(ApiError::invalid(
            param,
            format!("the audio is {seconds:.1} s long; this server takes at most {max_audio_s} s"),
        ));
    }
    let samples = resample_to_16k(&audio).map_err(|e| ApiError::invalid(param, format!("{e:#}")))?;
    if samples.len() < MIN_SAMPLES {
        return Err(ApiError::invalid(
            param,
            format!("the audio is too short to contain speech ({} samples at 16 kHz)", samples.len()),
        ));
    }
    Ok(samples)
}

/// `input_audio.data` of a chat message: base64 of WAV or MP3 bytes.
pub fn decode_base64_audio(data: &str, max_audio_s: f64) -> Result<Vec<f32>, ApiError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| ApiError::invalid("messages", format!("input_audio.data is not valid base64: {e}")))?;
    decode_audio(&bytes, "messages", max_audio_s)
}
