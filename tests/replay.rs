//! The replay buffer: caps, uniform reservoir sampling, restarts, corruption, and
//! seeding from a corpus manifest. Synthetic items, and the real model only for
//! the text items it answers.

mod common;

use kioku::adapt::replay::{Offer, ReplayBuffer, ReplayContent, ReplayItem, ReplayKind, ReplayLimits};
use kioku::corpus::{Kind, ManifestEntry, Split};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::HashSet;
use std::path::Path;

/// Item `i`: every third one text, the others speech of a length that varies with `i`.
fn item(i: usize) -> ReplayItem {
    if i.is_multiple_of(3) {
        return ReplayItem::text(&format!("t{i}"), "test", &format!("question {i}?"), &format!("answer {i}."));
    }
    let audio: Vec<f32> = (0..200 + (i * 37) % 800).map(|n| ((n + i) as f32 * 0.05).sin() * 0.5).collect();
    ReplayItem::speech(&format!("s{i}"), "test", &audio, &format!("utterance {i}"), &format!("voice{}", i % 4))
}

/// Equal-sized text items, so that a byte cap means a fixed number of items.
fn small_item(i: usize) -> ReplayItem {
    ReplayItem::text(&format!("{i:06}"), "test", "prompt", "answer")
}

fn ids(buffer: &ReplayBuffer) -> Vec<String> {
    buffer.items().map(|i| i.id.clone()).collect()
}

#[test]
fn both_caps_hold_after_every_offer() {
    let dir = tempfile::tempdir().unwrap();
    // One run where the item cap binds, one where the byte cap does.
    for limits in
        [ReplayLimits { max_items: 20, max_bytes: 1_000_000 }, ReplayLimits { max_items: 500, max_bytes: 20_000 }]
    {
        let mut buffer = ReplayBuffer::new(&dir.path().join("replay.kbuf"), limits, 7);
        // Items average about 800 bytes: either way 400 offers are over 10 times the cap.
        let offers = 400;
        for i in 0..offers {
            buffer.offer(item(i));
            assert!(buffer.len() <= limits.max_items, "{} items after offer {i}", buffer.len());
            assert!(buffer.bytes() <= limits.max_bytes, "{} bytes after offer {i}", buffer.bytes());
            assert_eq!(buffer.bytes(), buffer.items().map(|i| i.bytes()).sum::<u64>());
        }
        assert_eq!(buffer.seen(), offers as u64);
        assert!(buffer.len() >= 10, "the buffer fills up: {} items", buffer.len());
    }
}

#[test]
fn oversized_and_repeated_items_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut buffer =
        ReplayBuffer::new(&dir.path().join("replay.kbuf"), ReplayLimits { max_items: 10, max_bytes: 100 }, 1);
    assert_eq!(buffer.offer(item(1)), Offer::TooLarge);
    assert_eq!(buffer.offer(item(0)), Offer::Kept);
    assert_eq!(buffer.offer(item(0)), Offer::AlreadyHeld);
    assert_eq!((buffer.len(), buffer.seen()), (1, 1));
}

/// How often the first and the last `window` of `offers` items end up held, over `seeds` buffers.
fn early_and_late_rates(limits: ReplayLimits, offers: usize, window: usize, seeds: u64) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let (mut early, mut late) = (0, 0);
    for seed in 0..seeds {
        let mut buffer = ReplayBuffer::new(&dir.path().join("replay.kbuf"), limits, seed);
        for i in 0..offers {
            buffer.offer(small_item(i));
        }
        for id in ids(&buffer) {
            let i: usize = id.parse().unwrap();
            early += usize::from(i < window);
            late += usize::from(i >= offers - window);
        }
    }
    let trials = (seeds as usize * window) as f64;
    (early as f64 / trials, late as f64 / trials)
}

#[test]
fn reservoir_is_a_uniform_sample_of_everything_offered() {
    // 2000 offers into 100 places: each item is held with probability 1/20. Over 8 seeds
    // a window of 200 items expects 80 hits (sd about 9); a recency bias would show.
    let held = small_item(0).bytes();
    let by_items = ReplayLimits { max_items: 100, max_bytes: u64::MAX };
    let by_bytes = ReplayLimits { max_items: 512, max_bytes: 100 * held };
    for limits in [by_items, by_bytes] {
        let (early, late) = early_and_late_rates(limits, 2000, 200, 8);
        for (name, rate) in [("early", early), ("late", late)] {
            assert!((0.03..=0.07).contains(&rate), "{limits:?}: {name} items held at rate {rate:.3}, expected 0.05");
        }
    }
}

#[test]
fn a_saved_buffer_reopens_identical_and_continues_the_same_draws() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replay.kbuf");
    let limits = ReplayLimits { max_items: 40, max_bytes: 60_000 };
    let mut first = ReplayBuffer::new(&path, limits, 42);
    let mut uninterrupted = ReplayBuffer::new(&path, limits, 42);
    for i in 0..300 {
        first.offer(item(i));
        uninterrupted.offer(item(i));
    }
    first.save().unwrap();

    let mut reopened = ReplayBuffer::open(&path, limits).unwrap();
    assert_eq!(ids(&reopened), ids(&first));
    assert!(reopened.items().eq(first.items()), "items (audio included) survive the file");
    assert_eq!((reopened.seen(), reopened.bytes(), reopened.seed()), (first.seen(), first.bytes(), 42));
    assert_eq!(reopened.stats(), first.stats());

    for i in 300..600 {
        assert_eq!(reopened.offer(item(i)), uninterrupted.offer(item(i)), "offer {i}");
    }
    assert!(reopened.items().eq(uninterrupted.items()), "a restart does not change what is kept");
    assert_eq!(reopened.seen(), 600);
}

#[test]
fn lower_limits_evict_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replay.kbuf");
    let mut buffer = ReplayBuffer::new(&path, ReplayLimits { max_items: 50, max_bytes: u64::MAX }, 3);
    for i in 0..200 {
        buffer.offer(small_item(i));
    }
    buffer.save().unwrap();
    let smaller = ReplayBuffer::open(&path, ReplayLimits { max_items: 10, max_bytes: u64::MAX }).unwrap();
    assert_eq!(smaller.len(), 10);
    let before: HashSet<String> = ids(&buffer).into_iter().collect();
    assert!(ids(&smaller).iter().all(|id| before.contains(id)));
}

#[test]
fn a_missing_file_is_an_empty_buffer_and_saving_leaves_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replay.kbuf");
    let mut buffer = ReplayBuffer::open(&path, ReplayLimits::default()).unwrap();
    assert!(buffer.is_empty());
    assert!(!path.exists(), "opening creates nothing");
    buffer.save().unwrap();
    for i in 0..30 {
        buffer.offer(item(i));
    }
    buffer.save().unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["replay.kbuf"]);
    assert_eq!(ReplayBuffer::open(&path, ReplayLimits::default()).unwrap().len(), 30);
}

fn assert_refused(path: &Path, what: &str) {
    let error = format!("{:#}", ReplayBuffer::open(path, ReplayLimits::default()).unwrap_err());
    assert!(error.contains(&path.display().to_string()), "{what}: error names the file: {error}");
    assert!(error.contains("--no-replay"), "{what}: error says the way out: {error}");
}

#[test]
fn any_damage_is_reported_naming_the_file_which_is_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replay.kbuf");
    let mut buffer = ReplayBuffer::new(&path, ReplayLimits::default(), 5);
    for i in [0, 1, 3] {
        buffer.offer(ReplayItem { content: shorten(item(i).content), ..item(i) });
    }
    buffer.save().unwrap();
    let good = std::fs::read(&path).unwrap();

    // Every single flipped byte, header and audio alike, whether a low or a high bit.
    for position in 0..good.len() {
        for mask in [0x01, 0x80] {
            let mut bad = good.clone();
            bad[position] ^= mask;
            std::fs::write(&path, &bad).unwrap();
            assert_refused(&path, &format!("byte {position} ^ {mask:#x}"));
            assert_eq!(std::fs::read(&path).unwrap(), bad, "the damaged file is kept for inspection");
        }
    }
    for length in [0, 4, 8, good.len() / 2, good.len() - 1] {
        std::fs::write(&path, &good[..length]).unwrap();
        assert_refused(&path, &format!("truncated to {length} bytes"));
        assert_eq!(std::fs::read(&path).unwrap().len(), length);
    }
    let mut longer = good.clone();
    longer.extend([0, 0]);
    std::fs::write(&path, &longer).unwrap();
    assert_refused(&path, "two bytes appended");
}

/// Speech cut to 8 samples, to keep the every-byte test small.
fn shorten(content: ReplayContent) -> ReplayContent {
    match content {
        ReplayContent::Speech { audio, transcript, speaker } => {
            ReplayContent::Speech { audio: audio[..8].to_vec(), transcript, speaker }
        }
        text => text,
    }
}

#[test]
fn samples_are_distinct_and_follow_the_asked_mix() {
    let dir = tempfile::tempdir().unwrap();
    let mut buffer = ReplayBuffer::new(&dir.path().join("replay.kbuf"), ReplayLimits::default(), 9);
    for i in 0..30 {
        buffer.offer(item(i)); // 10 text, 20 speech
    }
    let mut rng = StdRng::seed_from_u64(1);
    let distinct = |items: &[&ReplayItem]| items.iter().map(|i| &i.id).collect::<HashSet<_>>().len();
    let drawn = buffer.sample(12, &mut rng);
    assert_eq!((drawn.len(), distinct(&drawn)), (12, 12));
    assert_eq!(buffer.sample(100, &mut rng).len(), 30);

    let count = |items: &[&ReplayItem], kind| items.iter().filter(|i| i.kind() == kind).count();
    let mixed = buffer.sample_mixed(12, 0.25, &mut rng);
    assert_eq!((count(&mixed, ReplayKind::Text), count(&mixed, ReplayKind::Speech), distinct(&mixed)), (3, 9, 12));
    // Only 10 text items: the rest of a text-only request is made up with speech.
    let mostly_text = buffer.sample_mixed(16, 1.0, &mut rng);
    assert_eq!((count(&mostly_text, ReplayKind::Text), count(&mostly_text, ReplayKind::Speech)), (10, 6));
}

#[test]
fn seeding_from_a_corpus_manifest_takes_that_splits_clips() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    std::fs::create_dir_all(corpus.join("train")).unwrap();
    std::fs::create_dir_all(corpus.join("test")).unwrap();
    let mut manifest = String::new();
    for (i, split) in [Split::Train, Split::Test, Split::Train, Split::Train].into_iter().enumerate() {
        let entry = ManifestEntry {
            id: format!("question-{i}"),
            split,
            path: format!("{}/question-{i}.wav", split.as_str()),
            text: format!("What is {i} plus {i}?"),
            kind: Kind::Question,
            reference_answer: Some(format!("{}", 2 * i)),
            voice: format!("en+m{i}-s160-p50"),
            augmentation: "clean".into(),
            duration_s: 0.1,
        };
        let audio: Vec<f32> = (0..1600).map(|n| (n as f32 * 0.01 * (i + 1) as f32).sin() * 0.3).collect();
        kioku::audio::write_wav_16k(&corpus.join(&entry.path), &audio).unwrap();
        manifest += &(serde_json::to_string(&entry).unwrap() + "\n");
    }
    let manifest_path = corpus.join("manifest.jsonl");
    std::fs::write(&manifest_path, manifest).unwrap();

    let mut buffer = ReplayBuffer::new(&dir.path().join("replay.kbuf"), ReplayLimits::default(), 0);
    let summary = buffer.seed_from_corpus(&manifest_path, Split::Train, Some(2)).unwrap();
    assert_eq!((summary.offered, summary.held), (2, 2));
    assert_eq!(ids(&buffer), ["question-0", "question-2"]);
    let clip = buffer.items().next().unwrap();
    assert_eq!((clip.source.as_str(), clip.speaker()), ("corpus:train", Some("en+m0-s160-p50")));
    let ReplayContent::Speech { audio, transcript, .. } = &clip.content else { panic!("a speech item") };
    assert_eq!((audio.len(), transcript.as_str()), (1600, "What is 0 plus 0?"));

    // Seeding again adds only what is not held yet.
    let summary = buffer.seed_from_corpus(&manifest_path, Split::Train, None).unwrap();
    assert_eq!((summary.offered, buffer.len()), (1, 3));
    assert_eq!(buffer.stats().by_speaker.len(), 3);

    // The model's own answers to the split's questions become text items.
    let answers = buffer.seed_text_answers(&common::assistant(), &corpus, Split::Train, 2, 12, &|| ()).unwrap();
    assert_eq!((answers.offered, buffer.len()), (2, 5));
    let text = buffer.items().find(|i| i.kind() == ReplayKind::Text).unwrap();
    let ReplayContent::Text { prompt, answer } = &text.content else { panic!("a text item") };
    assert_eq!((text.source.as_str(), prompt.as_str()), ("base-answers:train", "What is 0 plus 0?"));
    assert!(!answer.is_empty());

    std::fs::remove_file(corpus.join("train/question-3.wav")).unwrap();
    let mut fresh = ReplayBuffer::new(&dir.path().join("other.kbuf"), ReplayLimits::default(), 0);
    let error = format!("{:#}", fresh.seed_from_corpus(&manifest_path, Split::Train, None).unwrap_err());
    assert!(error.contains("question-3"), "{error}");
}

#[test]
fn without_a_corpus_a_buffer_is_seeded_with_synthesized_training_voices() {
    let dir = tempfile::tempdir().unwrap();
    let mut buffer = ReplayBuffer::new(&dir.path().join("replay.kbuf"), ReplayLimits::default(), 0);
    let summary = buffer.seed_synthesized(6, &|| {}).expect("espeak-ng and sox are installed (make deps)");
    assert_eq!((summary.offered, summary.held), (6, 6));
    let training_voices: HashSet<String> = kioku::corpus::voices_of(Split::Train).iter().map(|v| v.name()).collect();
    let speakers: HashSet<&str> = buffer.items().map(|i| i.speaker().unwrap()).collect();
    assert!(speakers.len() >= 3 && speakers.iter().all(|s| training_voices.contains(*s)), "{speakers:?}");
    for item in buffer.items() {
        let seconds = item.audio_16k().len() as f64 / 16_000.0;
        assert!(item.source == "corpus:train" && (0.5..15.0).contains(&seconds), "{} {seconds}", item.id);
    }
}
