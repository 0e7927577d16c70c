//! Audio front end: WAV decoding, resampling, and Whisper log-mel parity with the reference
//! fixtures made by scripts/mel_reference.py (librosa filters, numpy port of whisper).

use std::f32::consts::PI;
use std::path::{Path, PathBuf};

use candle_core::Device;
use hound::{SampleFormat, WavSpec, WavWriter};
use kioku::audio::{
    mel_filters, read_wav, read_wav_from, resample_to_16k, write_wav_16k, Audio, MelExtractor, Resampler,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mel").join(name)
}

fn read_f32(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(fixture(name)).unwrap();
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn sine(freq: f32, rate: u32, len: usize) -> Vec<f32> {
    (0..len).map(|n| 0.5 * (2.0 * PI * freq * n as f32 / rate as f32).sin()).collect()
}

#[test]
fn filterbank_matches_librosa() {
    for n_mels in [80, 128] {
        let ours = mel_filters(n_mels, 400, 16_000);
        let diff = max_abs_diff(&ours, &read_f32(&format!("filters_{n_mels}.f32")));
        println!("mel filters n_mels={n_mels}: max abs diff {diff:e}");
        assert!(diff < 1e-6, "n_mels={n_mels}: {diff}");
    }
}

#[test]
fn log_mel_matches_whisper_reference() {
    let audio = read_wav(&fixture("speech.wav")).unwrap();
    assert_eq!((audio.samples.len(), audio.sample_rate), (16_077, 16_000));
    let mel = MelExtractor::new(80).compute(&audio.samples);
    assert_eq!((mel.n_mels, mel.n_frames), (80, 100));
    let diff = max_abs_diff(&mel.data, &read_f32("logmel_80.f32"));
    println!("log-mel: max abs diff {diff:e}");
    assert!(diff < 1e-3, "{diff}");
    let tensor = mel.to_tensor(&Device::Cpu).unwrap();
    assert_eq!(tensor.dims(), &[1, 80, 100]);
}

#[test]
fn one_frame_per_full_hop() {
    for n_mels in [80, 128] {
        let extractor = MelExtractor::new(n_mels);
        // Includes clips shorter than the reflect padding (200) and than one hop.
        for len in [0, 1, 159, 160, 170, 399, 400, 16_000, 16_077, 480_000] {
            let mel = extractor.compute(&sine(440.0, 16_000, len));
            assert_eq!(mel.n_frames, len / 160, "len {len}");
            assert_eq!(mel.data.len(), n_mels * mel.n_frames);
            assert!(mel.data.iter().all(|x| x.is_finite()));
        }
    }
}

/// Resamples a 440 Hz sine and compares it with the same sine generated at 16 kHz: any
/// change of length, frequency or time offset shows up as a large error.
#[test]
fn resampling_keeps_frequency_length_and_timing() {
    for rate in [8_000, 22_050, 44_100, 48_000] {
        let len = rate as usize * 3 / 4 + 7;
        let audio = Audio { samples: sine(440.0, rate, len), sample_rate: rate };
        let out = resample_to_16k(&audio).unwrap();
        let expected_len = (len as f64 * 16_000.0 / rate as f64).round() as usize;
        assert_eq!(out.len(), expected_len, "{rate} Hz");
        let want = sine(440.0, 16_000, out.len());
        // The edges see the zero padding; compare the steady state.
        let diff = max_abs_diff(&out[200..out.len() - 200], &want[200..want.len() - 200]);
        println!("resample {rate} Hz -> 16 kHz: max abs error {diff:e}");
        assert!(diff < 1e-3, "{rate} Hz: {diff}");
    }
}

#[test]
fn streaming_resampler_matches_whole_clip() {
    let audio = Audio { samples: sine(1000.0, 44_100, 30_011), sample_rate: 44_100 };
    let whole = resample_to_16k(&audio).unwrap();
    let mut resampler = Resampler::to_16k(44_100).unwrap();
    for _ in 0..2 {
        // Reusable after flush.
        let mut streamed = Vec::new();
        for piece in audio.samples.chunks(777) {
            streamed.extend(resampler.process(piece));
        }
        streamed.extend(resampler.flush());
        assert_eq!(streamed, whole);
    }
}

#[test]
fn resampling_16k_is_identity_and_bad_rates_fail() {
    let audio = Audio { samples: sine(440.0, 16_000, 1234), sample_rate: 16_000 };
    assert_eq!(resample_to_16k(&audio).unwrap(), audio.samples);
    let err = Resampler::to_16k(0).err().unwrap().to_string();
    assert!(err.contains("unsupported sample rate 0 Hz"), "{err}");
}

fn write_test_wav(path: &Path, spec: WavSpec, values: &[f32]) {
    let mut w = WavWriter::create(path, spec).unwrap();
    for &v in values {
        match (spec.sample_format, spec.bits_per_sample) {
            (SampleFormat::Float, _) => w.write_sample(v).unwrap(),
            (_, 8) => w.write_sample((v * 128.0) as i8).unwrap(),
            (_, 16) => w.write_sample((v * 32768.0) as i16).unwrap(),
            (_, bits) => w.write_sample((v as f64 * (1u64 << (bits - 1)) as f64) as i32).unwrap(),
        }
    }
    w.finalize().unwrap();
}

#[test]
fn reads_every_supported_wav_format() {
    let dir = tempfile::tempdir().unwrap();
    let values = [0.0, 0.5, -0.5, 0.25, -1.0, 0.125];
    let formats = [
        (SampleFormat::Int, 8),
        (SampleFormat::Int, 16),
        (SampleFormat::Int, 24),
        (SampleFormat::Int, 32),
        (SampleFormat::Float, 32),
    ];
    for (sample_format, bits_per_sample) in formats {
        let spec = WavSpec { channels: 1, sample_rate: 16_000, bits_per_sample, sample_format };
        let path = dir.path().join(format!("{sample_format:?}{bits_per_sample}.wav"));
        write_test_wav(&path, spec, &values);
        let audio = read_wav(&path).unwrap();
        assert_eq!(audio, Audio { samples: values.to_vec(), sample_rate: 16_000 }, "{path:?}");
    }

    // Stereo at 48 kHz: channels are averaged, the rate is kept.
    let spec = WavSpec { channels: 2, sample_rate: 48_000, bits_per_sample: 16, sample_format: SampleFormat::Int };
    let path = dir.path().join("stereo48k.wav");
    write_test_wav(&path, spec, &[0.5, -0.25, 1.0 - 1.0 / 32768.0, 0.0]);
    let audio = read_wav(&path).unwrap();
    assert_eq!(audio.sample_rate, 48_000);
    assert_eq!(audio.samples, [0.125, 0.5 - 0.5 / 32768.0]);
    assert_eq!(resample_to_16k(&audio).unwrap().len(), 1);

    // The same bytes from memory.
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(read_wav_from(&bytes[..], "upload").unwrap(), audio);
}

#[test]
fn write_wav_16k_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec.wav");
    let samples = sine(300.0, 16_000, 1600);
    write_wav_16k(&path, &samples).unwrap();
    write_wav_16k(&path, &samples).unwrap(); // replaces an existing file
    let audio = read_wav(&path).unwrap();
    assert_eq!(audio.sample_rate, 16_000);
    assert!(max_abs_diff(&audio.samples, &samples) <= 1.0 / 32768.0);
    // Only the WAV is left behind, no temp file.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

/// A WAV file with a hand-made fmt chunk, for formats hound cannot write.
fn raw_wav(tag: u16, bits: u16, extension: &[u8], data: &[u8]) -> Vec<u8> {
    let block_align = bits / 8;
    let mut fmt = Vec::new();
    fmt.extend(tag.to_le_bytes());
    fmt.extend(1u16.to_le_bytes()); // channels
    fmt.extend(16_000u32.to_le_bytes());
    fmt.extend((16_000 * u32::from(block_align)).to_le_bytes());
    fmt.extend(block_align.to_le_bytes());
    fmt.extend(bits.to_le_bytes());
    fmt.extend(extension);
    let mut out = b"RIFF".to_vec();
    out.extend((4 + 8 + fmt.len() as u32 + 8 + data.len() as u32).to_le_bytes());
    out.extend(b"WAVEfmt ");
    out.extend((fmt.len() as u32).to_le_bytes());
    out.extend(fmt);
    out.extend(b"data");
    out.extend((data.len() as u32).to_le_bytes());
    out.extend(data);
    out
}

#[test]
fn bad_wav_input_gives_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.wav");
    write_wav_16k(&good, &sine(440.0, 16_000, 1000)).unwrap();
    let good = std::fs::read(good).unwrap();
    let header_only = dir.path().join("header_only.wav");
    write_wav_16k(&header_only, &[]).unwrap();
    let header_only = std::fs::read(header_only).unwrap();
    assert_eq!(header_only.len(), 44);
    // WAVE_FORMAT_EXTENSIBLE, 12 valid bits in 16-bit containers, PCM sub-format.
    let mut ext_12bit = 22u16.to_le_bytes().to_vec();
    ext_12bit.extend(12u16.to_le_bytes());
    ext_12bit.extend(4u32.to_le_bytes());
    ext_12bit.extend([1, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xaa, 0, 0x38, 0x9b, 0x71]);

    let cases: [(&str, Vec<u8>, &str); 9] = [
        ("text.wav", b"hello, I am not audio".to_vec(), "is not a WAV file"),
        ("tiny.wav", b"RIF".to_vec(), "is not a WAV file"),
        ("empty.wav", header_only, "contains no audio samples"),
        ("no_data.wav", good[..44].to_vec(), "WAV data is truncated (header says 1000 samples, file holds 0)"),
        ("cut_data.wav", good[..1000].to_vec(), "WAV data is truncated"),
        ("cut_header.wav", good[..30].to_vec(), "WAV header is truncated"),
        ("f64.wav", raw_wav(3, 64, &[], &[0; 16]), "unsupported"),
        ("alaw.wav", raw_wav(6, 8, &[], &[0; 16]), "unsupported WAV encoding"),
        ("12bit.wav", raw_wav(0xfffe, 16, &ext_12bit, &[0; 16]), "unsupported sample format 12-bit"),
    ];
    for (name, bytes, expected) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = format!("{:#}", read_wav(&path).unwrap_err());
        println!("{err}");
        assert!(err.contains(expected) && err.contains(name) && !err.contains('\n'), "{err}");
    }

    let missing = dir.path().join("missing.wav");
    let err = format!("{:#}", read_wav(&missing).unwrap_err());
    assert!(err.starts_with("cannot open") && err.contains("missing.wav"), "{err}");
}
