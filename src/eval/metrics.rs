//! Scoring transcripts and answers. Text is compared after normalisation
//! (lower case, punctuation dropped, small numbers spelled out) so that
//! "It's 5." and "it's five" count as the same words.

use std::collections::HashSet;

/// Lower-cased words without punctuation; numbers up to twenty spelled out
/// (Whisper writes digits, reference transcripts spell them).
pub fn normalized_words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() || c == '\'' || c.is_whitespace() { c } else { ' ' })
        .collect::<String>()
        .split_whitespace()
        .map(|w| number_word(w).unwrap_or(w).to_string())
        .collect()
}

fn number_word(w: &str) -> Option<&'static str> {
    const WORDS: [&str; 21] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
        "twenty",
    ];
    w.parse::<usize>().ok().and_then(|n| WORDS.get(n).copied())
}

/// Word-level edit distance between a reference and a hypothesis, and the
/// reference's length: the two halves of a word error rate.
pub fn word_errors(reference: &str, hypothesis: &str) -> (usize, usize) {
    let (r, h) = (normalized_words(reference), normalized_words(hypothesis));
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for i in 1..=r.len() {
        let mut cur = vec![i; h.len() + 1];
        for j in 1..=h.len() {
            cur[j] = (prev[j - 1] + usize::from(r[i - 1] != h[j - 1])).min(prev[j] + 1).min(cur[j - 1] + 1);
        }
        prev = cur;
    }
    (prev[h.len()], r.len())
}

/// Word error rate of one hypothesis.
pub fn wer(reference: &str, hypothesis: &str) -> f64 {
    let (errors, words) = word_errors(reference, hypothesis);
    errors as f64 / words.max(1) as f64
}

/// Corpus-level word error rate: total errors over total reference words.
#[derive(Debug, Clone, Copy, Default)]
pub struct WerTally {
    pub errors: usize,
    pub words: usize,
}

impl WerTally {
    pub fn add(&mut self, reference: &str, hypothesis: &str) {
        let (errors, words) = word_errors(reference, hypothesis);
        self.errors += errors;
        self.words += words;
    }

    pub fn rate(&self) -> f64 {
        self.errors as f64 / self.words.max(1) as f64
    }
}

/// Words too common to show what an answer is about.
const STOPWORDS: &[&str] = &[
    "a", "an", "the", "is", "are", "was", "were", "be", "been", "of", "to", "in", "on", "at", "for", "and", "or", "it",
    "it's", "its", "this", "that", "with", "as", "by", "i", "you", "your", "my", "me", "we", "can", "do", "does",
    "what", "which", "there", "here", "so", "if", "but", "not", "have", "has", "will", "would", "could", "should",
    "about", "from", "into", "also", "some", "any", "very", "just", "than", "then", "they", "their", "them", "he",
    "she", "his", "her", "our", "am", "sure", "yes", "no", "okay", "ok", "let's", "let", "i'm", "i'd", "i'll",
    "you're", "here's", "there's",
];

/// How many leading words of an answer are compared: the first sentence or
/// so carries the answer; later words drift even between two text runs.
const COMPARED_WORDS: usize = 24;

fn content_words(text: &str) -> HashSet<String> {
    normalized_words(text).into_iter().take(COMPARED_WORDS).filter(|w| !STOPWORDS.contains(&w.as_str())).collect()
}

/// F1 overlap of the content words at the start of two answers (1 when both have none).
pub fn answer_overlap(a: &str, b: &str) -> f64 {
    let (a, b) = (content_words(a), content_words(b));
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let common = a.intersection(&b).count() as f64;
    if common == 0.0 {
        return 0.0;
    }
    let (precision, recall) = (common / a.len() as f64, common / b.len() as f64);
    2.0 * precision * recall / (precision + recall)
}

/// Two answers agree when they are about the same things: content-word F1 of at least one half.
pub fn answers_agree(a: &str, b: &str) -> bool {
    answer_overlap(a, b) >= 0.5
}

/// Whether an answer contains every word of a short reference answer ("Paris", "21").
pub fn contains_reference(answer: &str, reference: &str) -> bool {
    let said: HashSet<String> = normalized_words(answer).into_iter().collect();
    let wanted = normalized_words(reference);
    !wanted.is_empty() && wanted.iter().all(|w| said.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wer_counts_edits_after_normalisation() {
        assert_eq!(wer("It's five o'clock.", "it's 5 o'clock"), 0.0);
        assert_eq!(word_errors("the cat sat", "the bat sat down"), (2, 3));
        let mut tally = WerTally::default();
        tally.add("one two", "one");
        tally.add("three four five six", "three four five six");
        assert!((tally.rate() - 1.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn agreement_looks_at_content_not_phrasing() {
        assert!(answers_agree("The capital of France is Paris.", "Paris is the capital of France, a city of art."));
        assert!(!answers_agree("The capital of France is Paris.", "The capital of Hungary is Budapest."));
        assert!(contains_reference("Three weeks is 21 days.", "21"));
        assert!(!contains_reference("Three weeks is 20 days.", "21"));
    }
}
