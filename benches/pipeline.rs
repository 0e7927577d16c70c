//! End-to-end latency benchmark on the example question, with candle-transformers'
//! Whisper and quantized Llama on the same input as the reference. Run with
//! `make bench` (release build). Prints a Markdown table; compare the ratios,
//! which are measured in one run on the same machine, not absolute times.

#[path = "../tests/common/mod.rs"]
mod common;

use candle_core::{Device, IndexOp, Tensor};
use candle_transformers::models::quantized_llama;
use kioku::assistant::{load_audio_16k, Assistant, Mode, Timings};
use kioku::generation::SamplingOptions;
use std::time::Instant;

const RUNS: usize = 5;
const ANSWER_TOKENS: usize = 48;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time_ms<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let t = Instant::now();
    let out = f();
    (t.elapsed().as_secs_f64() * 1e3, out)
}

/// Peak resident set size of this process so far, in MB (Linux).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
}

fn main() {
    let model = common::model_path();
    let wav = common::example_wav();
    let samples = load_audio_16k(&wav).unwrap();
    let device = Device::Cpu;
    let sampling = SamplingOptions { max_tokens: ANSWER_TOKENS, ..Default::default() };

    // --- kioku ---
    let loads: Vec<f64> = (0..RUNS).map(|_| time_ms(|| Assistant::load(&model, &device).unwrap()).0).collect();
    let assistant = Assistant::load(&model, &device).unwrap();
    let mut runs: Vec<(Timings, f64)> = Vec::new();
    for _ in 0..RUNS {
        let answer = assistant.ask_audio(&samples, Mode::Cascade, &sampling, &mut |_| {}).unwrap();
        runs.push((answer.timings_ms, answer.tokens_per_s));
    }
    let pick = |f: fn(&Timings) -> f64| median(runs.iter().map(|(t, _)| f(t)).collect());
    // End-to-end skips the ASR decoder: audio goes through the projector into the prompt.
    // Its decode runs through the speech adapter when the model has one.
    let e2e = assistant.has_projector().then(|| {
        let answers: Vec<_> =
            (0..RUNS).map(|_| assistant.ask_audio(&samples, Mode::E2e, &sampling, &mut |_| {}).unwrap()).collect();
        (
            median(answers.iter().map(|a| a.timings_ms.first_token).collect()),
            median(answers.iter().map(|a| a.tokens_per_s).collect()),
        )
    });
    // Silero VAD runs on every 32 ms of live audio: the time per chunk, over the whole clip.
    let vad_chunk_ms = assistant.vad().map(|vad| {
        let mut state = kioku::model::silero::SileroState::new().unwrap();
        let chunks: Vec<&[f32]> = samples.chunks_exact(kioku::model::silero::CHUNK).collect();
        let run = |state: &mut kioku::model::silero::SileroState| {
            chunks.iter().map(|c| vad.probability(c, state).unwrap()).sum::<f32>()
        };
        median((0..RUNS).map(|_| time_ms(|| run(&mut state)).0 / chunks.len() as f64).collect())
    });
    // While an answer is spoken, every 10 ms of microphone audio goes through the echo canceller:
    // its cost per second of audio, on the clip leaking into itself 200 ms later.
    let echo_ms_per_s = {
        let delay = 3_200;
        let mic: Vec<f32> =
            (0..samples.len()).map(|i| i.checked_sub(delay).map_or(0.0, |j| 0.5 * samples[j])).collect();
        let run = || {
            let mut canceller = kioku::audio::echo::EchoCanceller::new();
            mic.chunks(160).zip(samples.chunks(160)).map(|(m, r)| canceller.process(m, r).len()).sum::<usize>()
        };
        median((0..RUNS).map(|_| time_ms(run).0).collect()) / (samples.len() as f64 / 16_000.0)
    };
    let ours_rss = peak_rss_mb();

    // --- reference: candle-transformers Whisper (30 s padded, as upstream) + quantized Llama ---
    let imported = kioku::import::import_whisper(&common::whisper_source()).unwrap();
    let cfg = &imported.config;
    let mut whisper = common::reference_whisper(&imported);
    let mut padded = samples.clone();
    padded.resize(16_000 * 30, 0.0);
    let mel30 = kioku::audio::MelExtractor::new(cfg.n_mels).compute(&padded).to_tensor(&device).unwrap();
    let ref_encoder = median((0..RUNS).map(|_| time_ms(|| whisper.encoder.forward(&mel30, true).unwrap()).0).collect());
    let enc30 = whisper.encoder.forward(&mel30, true).unwrap();
    // Greedy decode of the same number of tokens our transcript took.
    let transcript_tokens = {
        let tokenizer = tokenizers::Tokenizer::from_bytes(imported.tokenizer.as_bytes()).unwrap();
        let (text, _) = assistant.transcribe(&samples).unwrap();
        tokenizer.encode(text, false).unwrap().len() + 1
    };
    let ref_asr = median(
        (0..RUNS)
            .map(|_| {
                time_ms(|| {
                    let mut tokens = vec![50257u32, 50362];
                    for i in 0..transcript_tokens {
                        let input = Tensor::new(&tokens[..], &device).unwrap().unsqueeze(0).unwrap();
                        let h = whisper.decoder.forward(&input, &enc30, i == 0).unwrap();
                        let logits =
                            whisper.decoder.final_linear(&h.i((.., h.dim(1).unwrap() - 1..)).unwrap()).unwrap();
                        tokens.push(logits.flatten_all().unwrap().argmax(0).unwrap().to_scalar::<u32>().unwrap());
                    }
                })
                .0
            })
            .collect(),
    );

    let gguf = common::gguf_source();
    let prompt_len = {
        let chat = kioku::generation::ChatTemplate::new(&assistant.header().chat_template).unwrap();
        let prompt = chat.render(None, "What is the capital of France?").unwrap();
        assistant.llm_tokenizer().encode(prompt, false).unwrap().get_ids().to_vec()
    };
    let (ref_load, mut llama) = time_ms(|| {
        let mut f = std::fs::File::open(&gguf).unwrap();
        let content = candle_core::quantized::gguf_file::Content::read(&mut f).unwrap();
        quantized_llama::ModelWeights::from_gguf(content, &mut f, &device).unwrap()
    });
    let mut ref_prefill = Vec::new();
    let mut ref_tps = Vec::new();
    for _ in 0..RUNS {
        llama.clear_kv_cache();
        let input = Tensor::new(prompt_len.as_slice(), &device).unwrap().unsqueeze(0).unwrap();
        let (prefill, logits) = time_ms(|| llama.forward(&input, 0).unwrap());
        ref_prefill.push(prefill);
        let mut next = logits.i(0).unwrap().argmax(0).unwrap().to_scalar::<u32>().unwrap();
        let (decode, _) = time_ms(|| {
            for i in 0..ANSWER_TOKENS {
                let input = Tensor::new(&[[next]], &device).unwrap();
                let l = llama.forward(&input, prompt_len.len() + i).unwrap();
                next = l.i(0).unwrap().argmax(0).unwrap().to_scalar::<u32>().unwrap();
            }
        });
        ref_tps.push(ANSWER_TOKENS as f64 / (decode / 1e3));
    }
    let (ref_prefill, ref_tps) = (median(ref_prefill), median(ref_tps));

    let ours_tps = median(runs.iter().map(|(_, tps)| *tps).collect());
    let clip_s = samples.len() as f64 / 16_000.0;
    println!("\nkioku pipeline benchmark: example question ({clip_s:.2} s of audio), median of {RUNS} runs, CPU ({} threads)\n", candle_core::utils::get_num_threads());
    println!("| stage | kioku | reference (candle-transformers) | reference / kioku |");
    println!("|---|---|---|---|");
    let row = |name: &str, ours: f64, reference: Option<f64>, unit: &str| {
        let r = reference.map_or("—".into(), |r| format!("{r:.1} {unit}"));
        let ratio = reference.map_or("—".into(), |r| format!("{:.2}×", r / ours));
        println!("| {name} | {ours:.1} {unit} | {r} | {ratio} |");
    };
    row("load (mmap → ready)", median(loads), Some(ref_load), "ms");
    row("mel", pick(|t| t.mel), None, "ms");
    row("encoder (kioku: real length; ref: 30 s padded)", pick(|t| t.encoder), Some(ref_encoder), "ms");
    row("ASR decode (greedy transcript)", pick(|t| t.asr_decode), Some(ref_asr), "ms");
    row(
        "LLM prefill (kioku: the question after the cached prefix; ref: whole chat prompt)",
        pick(|t| t.prefill),
        Some(ref_prefill),
        "ms",
    );
    row("end of audio → first answer token (cascade)", pick(|t| t.first_token), None, "ms");
    if let Some((first_token, _)) = e2e {
        let cascade = pick(|t| t.first_token);
        println!("| end of audio → first answer token (e2e; cascade in the reference column) | {first_token:.1} ms | {cascade:.1} ms | {:.2}× |", cascade / first_token);
    }
    println!("| decode | {ours_tps:.1} tok/s | {ref_tps:.1} tok/s | {:.2}× (kioku / ref) |", ours_tps / ref_tps);
    if let Some((_, e2e_tps)) = e2e {
        let speech = if assistant.header().speech_lora.is_some() { ", through the speech adapter" } else { "" };
        println!("| decode (e2e{speech}; cascade's in the reference column) | {e2e_tps:.1} tok/s | {ours_tps:.1} tok/s | {:.2}× |", e2e_tps / ours_tps);
    }
    if let Some(ms) = vad_chunk_ms {
        println!("| Silero VAD, one 32 ms chunk of live audio | {ms:.3} ms | — | — |");
    }
    println!("| echo canceller, 1 s of microphone audio while speaking | {echo_ms_per_s:.1} ms | — | — |");
    println!("| peak RSS (kioku only, before the reference loads) | {:.0} MB | — | — |", ours_rss.unwrap_or(f64::NAN));
}
