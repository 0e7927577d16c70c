//! kioku's side of `make bench-anchors` (scripts/bench_anchors.py): one round
//! of the figures llama.cpp and whisper.cpp are compared on, printed as one
//! JSON line. The script runs it as a fresh process per round, between the
//! reference runs, so every figure here is a first run in a new process, as
//! theirs are.
//!
//!   cargo run --release --example anchor_probe -- MODEL WAV [--prefill 64,128,512] [--depths 0,512] [--decode 128] [--device cpu|cuda|metal]
//!
//! A depth of 0 in --depths stands for the example question's chat prompt
//! (its length is printed as `chat_prompt_tokens`). Threads: RAYON_NUM_THREADS.
//! Uses the public API only: `Assistant` for the Whisper figures and the whole
//! file's load; `MappedModel` + `Llama` for the LLM alone.

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor, D};
use kioku::assistant::{load_audio_16k, Assistant, Mode};
use kioku::generation::{ChatTemplate, SamplingOptions};
use kioku::model::bpe::{tokenizer_from_json, TextTokenizer};
use kioku::model::components::{ASR_DECODER, ENCODER, LLM};
use kioku::model::file::MappedModel;
use kioku::model::llama::Llama;
use kioku::model::whisper::{AsrDecoder, WhisperEncoder};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// Prefill text, repeated up to the wanted length: ordinary English, so the
/// tokens are typical ones (llama-bench uses random tokens; the cost per
/// token does not depend on which).
const TEXT: &str = "The history of the city goes back more than two thousand years. \
It grew on both banks of a wide river, first as a fishing village, then as a market town \
where traders from the north and the south met to exchange wool, salt, wine and grain. ";

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn list(arg: &str) -> Result<Vec<usize>> {
    arg.split(',').map(|s| s.trim().parse::<usize>().with_context(|| format!("not a number list: {arg}"))).collect()
}

struct Args {
    model: PathBuf,
    wav: PathBuf,
    prefill: Vec<usize>,
    depths: Vec<usize>,
    decode: usize,
    device: String,
}

fn parse_args() -> Result<Args> {
    let mut positional = Vec::new();
    let (mut prefill, mut depths, mut decode, mut device) = (vec![64, 128, 512], vec![0, 512], 128, "cpu".to_string());
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--prefill" => prefill = list(&value()?)?,
            "--depths" => depths = list(&value()?)?,
            "--decode" => decode = value()?.parse()?,
            "--device" => device = value()?,
            _ => positional.push(PathBuf::from(&a)),
        }
    }
    let [model, wav] = <[PathBuf; 2]>::try_from(positional)
        .ok()
        .context("usage: anchor_probe MODEL WAV [--prefill N,..] [--depths N,..] [--decode N] [--device D]")?;
    Ok(Args { model, wav, prefill, depths, decode, device })
}

/// The LLM alone, as llama.cpp loads it: map the file, build the model, parse its tokenizer.
fn load_llm(path: &std::path::Path, device: &Device) -> Result<(Llama, TextTokenizer)> {
    let mapped = MappedModel::open(path)?;
    let weights = mapped.weights(device, kioku::device::default_dtype(device))?;
    let llm = Llama::load(&weights.pp(LLM), &mapped.header.llm)?;
    let tokenizer = tokenizer_from_json(&mapped.header.llm_tokenizer)?;
    Ok((llm, tokenizer))
}

/// Whisper alone, as whisper.cpp loads it.
fn load_whisper(path: &std::path::Path, device: &Device) -> Result<()> {
    let mapped = MappedModel::open(path)?;
    let weights = mapped.weights(device, kioku::device::default_dtype(device))?;
    let _encoder = WhisperEncoder::load(&weights.pp(ENCODER), &mapped.header.whisper)?;
    let _decoder = AsrDecoder::load(&weights.pp(ASR_DECODER), &mapped.header.whisper)?;
    let _tokenizer = tokenizer_from_json(&mapped.header.whisper_tokenizer)?;
    Ok(())
}

/// `n` token ids of [`TEXT`] repeated.
fn text_ids(tokenizer: &TextTokenizer, n: usize) -> Result<Vec<u32>> {
    let once = tokenizer.encode(TEXT, false).map_err(anyhow::Error::msg)?.get_ids().to_vec();
    Ok(once.iter().copied().cycle().take(n).collect())
}

fn argmax(logits: &Tensor) -> Result<u32> {
    Ok(logits.argmax(D::Minus1)?.to_scalar::<u32>()?)
}

/// Prefills `ids` into a fresh cache (ms), then decodes `n` greedy tokens (ms).
fn prefill_then_decode(llm: &Llama, ids: &[u32], n: usize, device: &Device) -> Result<(f64, f64)> {
    let mut cache = llm.new_cache();
    let t = Instant::now();
    let embeds = llm.embed(&Tensor::new(ids, device)?.unsqueeze(0)?)?;
    let mut logits = llm.next_token_logits(&embeds, &mut cache)?;
    let prefill = ms(t);
    let t = Instant::now();
    for _ in 0..n {
        let token = argmax(&logits)?;
        logits = llm.next_token_logits(&llm.embed(&Tensor::new(&[[token]], device)?)?, &mut cache)?;
    }
    Ok((prefill, ms(t)))
}

fn main() -> Result<()> {
    // As `kioku` does first thing: the same threads, the same pool settings.
    kioku::device::fix_cpu_threads();
    let args = parse_args()?;
    let device = kioku::device::parse_device(&args.device)?;
    let samples = load_audio_16k(&args.wav)?;

    // Whole file (Whisper + LLM + both tokenizers), as `kioku ask` loads it.
    let t = Instant::now();
    let assistant = Assistant::load(&args.model, &device)?;
    let load_ms = ms(t);

    // Whisper on the example clip: the first call in the process (what
    // `kioku transcribe` does), then again after warm_up (what `kioku listen`
    // and `kioku serve` do for every question).
    let (transcript, cold) = assistant.transcribe(&samples)?;
    assistant.warm_up()?;
    let (again, warm) = assistant.transcribe(&samples)?;
    if again != transcript {
        bail!("the second transcript differs from the first: {again:?} vs {transcript:?}");
    }
    // The example question's chat prompt (llama.cpp answers the same text)
    // and its length: the short context of the decode figure.
    let chat_prompt = ChatTemplate::new(&assistant.header().chat_template)?.render(None, &transcript)?;
    let answer =
        assistant.ask_text(&transcript, &SamplingOptions { max_tokens: 1, ..Default::default() }, &mut |_| {})?;
    let chat_prompt_tokens = answer.prompt_tokens;
    // End of audio -> first answer token, each way of answering (warm).
    let one_token = SamplingOptions { max_tokens: 1, ..Default::default() };
    let mut first_token = BTreeMap::new();
    for (name, mode) in [("cascade", Mode::Cascade), ("e2e", Mode::E2e)] {
        if mode == Mode::E2e && !assistant.has_projector() {
            continue;
        }
        let answer = assistant.ask_audio(&samples, mode, &one_token, &mut |_| {})?;
        first_token.insert(name, answer.timings_ms.first_token);
    }
    // Encoder frames kioku computes for the clip (whisper.cpp's -ac to match).
    let encoder_frames = assistant.encode_audio(&samples)?.dim(1)?;
    drop(assistant);

    let t = Instant::now();
    load_whisper(&args.model, &device)?;
    let whisper_load_ms = ms(t);
    let t = Instant::now();
    let (llm, tokenizer) = load_llm(&args.model, &device)?;
    let llm_load_ms = ms(t);

    // One untimed pass first, as llama-bench warms up before each test.
    prefill_then_decode(&llm, &text_ids(&tokenizer, 16)?, 4, &device)?;
    let mut prefill = BTreeMap::new();
    for &n in &args.prefill {
        let (ms, _) = prefill_then_decode(&llm, &text_ids(&tokenizer, n)?, 0, &device)?;
        prefill.insert(n.to_string(), json!({ "ms": ms, "tok_s": n as f64 / (ms / 1e3) }));
    }
    let mut decode = BTreeMap::new();
    for &depth in &args.depths {
        let depth = if depth == 0 { chat_prompt_tokens } else { depth };
        let (_, ms) = prefill_then_decode(&llm, &text_ids(&tokenizer, depth)?, args.decode, &device)?;
        decode.insert(depth.to_string(), json!({ "ms": ms, "tok_s": args.decode as f64 / (ms / 1e3) }));
    }

    let line = json!({
        "threads": candle_core::utils::get_num_threads(),
        "clip_s": samples.len() as f64 / 16_000.0,
        "transcript": transcript,
        "chat_prompt": chat_prompt,
        "chat_prompt_tokens": chat_prompt_tokens,
        "encoder_frames": encoder_frames,
        "load_ms": load_ms,
        "llm_load_ms": llm_load_ms,
        "whisper_load_ms": whisper_load_ms,
        "whisper_cold": { "mel_ms": cold.mel, "encoder_ms": cold.encoder, "decode_ms": cold.asr_decode, "total_ms": cold.total },
        "whisper_warm": { "mel_ms": warm.mel, "encoder_ms": warm.encoder, "decode_ms": warm.asr_decode, "total_ms": warm.total },
        "first_token_ms": first_token,
        "prefill": prefill,
        "decode_tokens": args.decode,
        "decode": decode,
    });
    println!("{line}");
    Ok(())
}
