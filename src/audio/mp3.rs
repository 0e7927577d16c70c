//! MP3 decoding to mono f32 with symphonia (pure Rust), for audio that
//! clients send compressed.

use super::Audio;
use anyhow::{anyhow, bail, Context, Result};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// Whether `bytes` start like an MP3 file: an ID3v2 tag or an MPEG audio frame header.
pub fn looks_like_mp3(bytes: &[u8]) -> bool {
    bytes.starts_with(b"ID3") || (bytes.len() >= 2 && bytes[0] == 0xFF && bytes[1] & 0xE0 == 0xE0)
}

/// Decodes MP3 `bytes`, averaging channels to mono. Fails once the audio
/// passes `max_seconds`, so a small file that expands to hours cannot
/// exhaust memory. `name` labels the source in errors.
pub fn read_mp3(bytes: &[u8], max_seconds: f64, name: &str) -> Result<Audio> {
    let source = MediaSourceStream::new(Box::new(std::io::Cursor::new(bytes.to_vec())), Default::default());
    let mut hint = Hint::new();
    hint.with_extension("mp3");
    let probed = symphonia::default::get_probe()
        .format(&hint, source, &FormatOptions::default(), &MetadataOptions::default())
        .map_err(|e| anyhow!("{name} is not a readable MP3 file: {e}"))?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .with_context(|| format!("{name} has no audio track"))?;
    let (track_id, sample_rate) =
        (track.id, track.codec_params.sample_rate.with_context(|| format!("{name} gives no sample rate"))?);
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| anyhow!("cannot decode {name}: {e}"))?;
    let max_samples = (max_seconds * sample_rate as f64) as usize;
    let mut samples = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(packet) => packet,
            Err(Error::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => bail!("cannot read {name}: {e}"),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(decoded) => decoded,
            // A damaged frame is skipped, as players do.
            Err(Error::DecodeError(_)) => continue,
            Err(e) => bail!("cannot decode {name}: {e}"),
        };
        let channels = decoded.spec().channels.count();
        let mut buffer = SampleBuffer::<f32>::new(decoded.capacity() as u64, *decoded.spec());
        buffer.copy_interleaved_ref(decoded);
        samples
            .extend(buffer.samples().chunks_exact(channels).map(|frame| frame.iter().sum::<f32>() / channels as f32));
        if samples.len() > max_samples {
            bail!("{name} is longer than {max_seconds} s");
        }
    }
    if samples.is_empty() {
        bail!("{name} contains no audio samples");
    }
    Ok(Audio { samples, sample_rate })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_that_are_not_mp3_are_refused_clearly() {
        assert!(!looks_like_mp3(b"RIFF....WAVE"));
        assert!(looks_like_mp3(b"ID3\x04\x00"));
        let err = read_mp3(b"ID3\x04 not really", 10.0, "the upload").unwrap_err().to_string();
        assert!(err.contains("the upload"), "{err}");
    }
}
