//! A forgetting report on disk: `report.md` (also what the CLI prints),
//! `report.json` (everything, per-item results included) and `report.svg`.

use super::forgetting::{Metric, Report};
use super::plot;
use anyhow::{Context, Result};
use std::fmt::Write;
use std::path::Path;

impl Report {
    /// Metrics that at least one arm has a value for, in column order.
    pub fn metrics(&self) -> Vec<Metric> {
        Metric::ALL.into_iter().filter(|m| self.arms.iter().any(|a| a.metrics.contains_key(m))).collect()
    }

    /// A sentence on the sets, then one table row per arm: each metric and its
    /// change against the first arm, evaluation seconds, and cost columns
    /// when any arm reports a cost.
    pub fn markdown(&self) -> String {
        let metrics = self.metrics();
        let train_s = self.arms.iter().any(|a| a.arm.cost.train_seconds.is_some());
        let megabytes = self.arms.iter().any(|a| a.arm.cost.megabytes.is_some());
        let mut header = vec!["arm".to_string()];
        for m in &metrics {
            header.extend([m.label().to_string(), "Δ".to_string()]);
        }
        header.push("eval s".into());
        header.extend(train_s.then(|| "train s".to_string()));
        header.extend(megabytes.then(|| "MB".to_string()));
        let mut out = self.sets_sentence();
        out.push_str("\n\n");
        let row = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        out.push_str(&row(&header));
        let rule: Vec<String> =
            header.iter().enumerate().map(|(i, _)| if i == 0 { "---" } else { "---:" }.to_string()).collect();
        out.push_str(&row(&rule));
        for (i, arm) in self.arms.iter().enumerate() {
            let mut cells = vec![arm.arm.name.clone()];
            for m in &metrics {
                cells.push(arm.metrics.get(m).map_or("n/a".into(), |v| value(*m, *v)));
                cells.push(if i == 0 {
                    "—".into()
                } else {
                    arm.changes.get(m).map_or("n/a".into(), |c| change(*m, *c))
                });
            }
            cells.push(format!("{:.1}", arm.eval_seconds));
            let optional = |v: Option<f64>, digits: usize| v.map_or(String::new(), |v| format!("{v:.digits$}"));
            cells.extend(train_s.then(|| optional(arm.arm.cost.train_seconds, 1)));
            cells.extend(megabytes.then(|| optional(arm.arm.cost.megabytes, 2)));
            out.push_str(&row(&cells));
        }
        out
    }

    fn sets_sentence(&self) -> String {
        let s = &self.sets;
        let gold = s.questions.iter().filter(|q| q.reference_answer.is_some()).count();
        let spoken = self.arms.iter().map(|a| a.items.e2e_qa.len()).max().unwrap_or(0);
        let mut text = format!(
            "{} new-speaker clips, {} earlier-speaker clips, {} real-speech clips; {} typed questions ({gold} with a gold answer",
            s.new_speaker.len(),
            s.earlier_speakers.len(),
            s.real_speech.len(),
            s.questions.len()
        );
        if spoken > 0 {
            let _ = write!(text, ", {spoken} also asked spoken, end-to-end");
            if let Some(voice) = &s.question_voice {
                let _ = write!(text, ", in the voice {voice}");
            }
        }
        let _ = write!(text, "); answers up to {} tokens; Δ against `{}`.", self.answer_tokens, self.arms[0].arm.name);
        text
    }

    /// Writes `report.md`, `report.json` and `report.svg` into `dir` (created if need be), each atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let files = [
            ("report.md", self.markdown().into_bytes()),
            ("report.json", serde_json::to_vec_pretty(self)?),
            ("report.svg", plot::grouped_bars(self).into_bytes()),
        ];
        for (name, bytes) in files {
            crate::atomic::write_bytes(&dir.join(name), &bytes)?;
        }
        Ok(())
    }
}

/// WER as a rate, QA scores in percent.
fn value(metric: Metric, v: f64) -> String {
    if metric.is_wer() {
        format!("{v:.3}")
    } else {
        format!("{:.1} %", v * 100.0)
    }
}

/// Signed, in the metric's unit (percentage points for QA); an exact zero is `0`.
fn change(metric: Metric, c: f64) -> String {
    match (c == 0.0, metric.is_wer()) {
        (true, _) => "0".into(),
        (false, true) => format!("{c:+.3}"),
        (false, false) => format!("{:+.1} pt", c * 100.0),
    }
}
