//! Module names as Hugging Face transformers spells them, so that adapter
//! files name the same modules PEFT finds in `LlamaForCausalLM` (or Qwen2's)
//! and `WhisperForConditionalGeneration`. The model file keeps kioku's names
//! (`llm.`, `encoder.`, `asr_decoder.`, `projector.`); only adapter files use these.
//!
//! | kioku                      | Hugging Face                      |
//! |----------------------------|-----------------------------------|
//! | `llm.layers.3.mlp.up_proj` | `model.layers.3.mlp.up_proj`      |
//! | `llm.lm_head`              | `lm_head`                         |
//! | `encoder.layers.0.fc1`     | `model.encoder.layers.0.fc1`      |
//! | `asr_decoder.layers.0.fc1` | `model.decoder.layers.0.fc1`      |
//! | `asr_decoder.proj_out`     | `proj_out`                        |
//! | `projector.linear_1`       | none: kept as is                  |

/// (kioku, Hugging Face) name pairs for whole names, checked first.
const WHOLE: [(&str, &str); 2] = [("llm.lm_head", "lm_head"), ("asr_decoder.proj_out", "proj_out")];

/// (kioku, Hugging Face) prefixes. Whisper's come before the LLM's, whose HF
/// prefix `model.` also begins theirs.
const PREFIXES: [(&str, &str); 3] =
    [("encoder.", "model.encoder."), ("asr_decoder.", "model.decoder."), ("llm.", "model.")];

/// The Hugging Face name of a kioku module, or None for modules Hugging Face has no counterpart of (the projector).
pub fn to_hf(module: &str) -> Option<String> {
    if let Some((_, hf)) = WHOLE.iter().find(|(kioku, _)| *kioku == module) {
        return Some(hf.to_string());
    }
    PREFIXES.iter().find_map(|(kioku, hf)| module.strip_prefix(kioku).map(|rest| format!("{hf}{rest}")))
}

/// The kioku name of a module named as Hugging Face does, or None if the name
/// is not one of kioku's components.
pub fn from_hf(module: &str) -> Option<String> {
    if let Some((kioku, _)) = WHOLE.iter().find(|(_, hf)| *hf == module) {
        return Some(kioku.to_string());
    }
    PREFIXES.iter().find_map(|(kioku, hf)| module.strip_prefix(hf).map(|rest| format!("{kioku}{rest}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_both_ways() {
        for (kioku, hf) in [
            ("llm.layers.3.self_attn.q_proj", "model.layers.3.self_attn.q_proj"),
            ("llm.lm_head", "lm_head"),
            ("encoder.layers.0.self_attn.out_proj", "model.encoder.layers.0.self_attn.out_proj"),
            ("asr_decoder.layers.1.encoder_attn.k_proj", "model.decoder.layers.1.encoder_attn.k_proj"),
            ("asr_decoder.proj_out", "proj_out"),
        ] {
            assert_eq!(to_hf(kioku).as_deref(), Some(hf));
            assert_eq!(from_hf(hf).as_deref(), Some(kioku));
        }
        assert_eq!(to_hf("projector.linear_1"), None);
        assert_eq!(from_hf("projector.linear_1"), None);
        assert_eq!(from_hf("layers.0.self_attn.q_proj"), None);
    }
}
