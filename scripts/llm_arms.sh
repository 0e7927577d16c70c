#!/bin/bash
# The LLM arms on fresh sentences (docs/ADAPTATION.md, "Fresh sentences, a third voice"):
# for each test voice and seed, adapt with LLM targets (the `kioku adapt` defaults for them)
# and Whisper-only replay from the same seeded buffer, evaluate both against the base, then
# split the LLM adapter into its Whisper and LLM halves and evaluate the LLM half at 0.25,
# 0.5 and 1 of its trained strength. Not a test: about 6 minutes per run on 2 cores.
#
#   scripts/llm_arms.sh WORK_DIR [VOICE SEED]...   (default: 3 test voices x seeds 0 and 1)
set -euo pipefail
WORK=${1:?usage: scripts/llm_arms.sh WORK_DIR [VOICE SEED]...}; shift
REPO=$(cd "$(dirname "$0")/.." && pwd)
K=$REPO/target/release/kioku
export KIOKU_MODEL=${KIOKU_MODEL:-$REPO/models/kioku-tiny-en.safetensors}
RUNS=("$@")
[ ${#RUNS[@]} -gt 0 ] || RUNS=(en-gb-scotland+klatt3-s175-p50 0 en-gb-scotland+klatt3-s175-p50 1
  en-us-nyc+m7-s170-p55 0 en-us-nyc+m7-s170-p55 1 en-gb-x-gbcwmd+grandpa-s155-p40 0 en-gb-x-gbcwmd+grandpa-s155-p40 1)
mkdir -p "$WORK" && cd "$WORK"
[ -f corpus/manifest.jsonl ] || $K corpus --out corpus --utterances 1200 --seed 3
[ -f seed.kbuf ] || $K replay seed --corpus corpus/manifest.jsonl --clips 200 --text-items 60 seed.kbuf

# Hand-written sentences a user might say to an assistant: 24 to train on, 16 held out.
TRAIN="Set a timer for ten minutes|What is the weather like tomorrow|Remind me to buy milk on the way home
Play some quiet music in the kitchen|How far is it to the nearest station|Send a message to my sister
Turn off the lights in the bedroom|What time does the bakery open|Add eggs and butter to the shopping list
Who painted the Mona Lisa|Call my mother after lunch|How do you spell necessary|Read me the latest news
Wake me up at half past six|Is the post office open on Sunday|Find a good place for dinner nearby
What is the square root of eighty one|Turn the heating up a little|Book a table for four on Friday
How long should I boil an egg|Translate good morning into French|Note that the meeting moved to Thursday
What is the population of Scotland|Pause the podcast for a moment"
HELD_OUT="Open the garage door|What day is it today|Schedule a call with the bank next week
How many ounces are in a pound|Switch the radio to the news channel|Tell me a short story about a fox
Where did I park the car|Start a workout playlist|What is the boiling point of water
Text my friend that I am running late|Close the curtains in the living room|How tall is the Eiffel Tower
Cancel my alarm for tomorrow|What is on my calendar this afternoon|Turn down the volume please
When does the sun set tonight"

# speak DIR "VOICE-sSPEED-pPITCH" "s1|s2|…": WAVs and transcripts.tsv, written once.
speak() {
  [ -f "$1/transcripts.tsv" ] && return
  local voice=${2%-s*-p*} speed pitch i=0
  speed=$(sed -E 's/.*-s([0-9]+)-p[0-9]+$/\1/' <<<"$2"); pitch=$(sed -E 's/.*-p([0-9]+)$/\1/' <<<"$2")
  mkdir -p "$1"; : > "$1/transcripts.tsv.part"
  while IFS= read -r text; do
    espeak-ng -v "$voice" -s "$speed" -p "$pitch" -w "$1/$(printf %02d $i).wav" "$text"
    printf '%02d\t%s\n' $i "$text" >> "$1/transcripts.tsv.part"; i=$((i + 1))
  done < <(tr '|' '\n' <<<"$3")
  mv "$1/transcripts.tsv.part" "$1/transcripts.tsv"
}

for ((r = 0; r < ${#RUNS[@]}; r += 2)); do
  voice=${RUNS[r]} seed=${RUNS[r + 1]}
  # Directory names write the voice's '+' as '_'.
  V=voices/${voice//+/_} R=runs/${voice//+/_}-seed$seed
  speak "$V/train" "$voice" "$TRAIN"; speak "$V/held-out" "$voice" "$HELD_OUT"
  for arm in llm replay; do
    [ -f "$R/$arm/adapter_config.json" ] && continue
    mkdir -p "$R"; cp seed.kbuf "$R/$arm.kbuf"
    targets=(); [ $arm = llm ] && targets=(--targets encoder-attn,decoder,llm-attn)
    $K adapt --data "$V/train" --out "$R/$arm" --seed "$seed" --replay-buffer "$R/$arm.kbuf" "${targets[@]}"
  done
  [ -f "$R/report/report.md" ] || $K eval --corpus corpus --new-speaker "$V/held-out" --questions 40 \
    --earlier-clips 20 --question-voice "$voice" --arm "llm-default=+$R/llm" --arm "replay=+$R/replay" --out "$R/report"
  # The saved LLM half is at the default --llm-scale 0.25: ×2 and ×4 give 0.5 and 1.
  python3 "$REPO/scripts/split_adapter.py" "$R/llm" "$R/whisper-half" "$R/llm-half"
  W=$R/whisper-half L=$R/llm-half
  [ -f "$R/sweep/report.md" ] || $K eval --corpus corpus --new-speaker "$V/held-out" --new-speaker-clips 2 \
    --earlier-clips 0 --real-clips 0 --questions 40 --question-voice "$voice" --arm "whisper-half=+$W" \
    --arm "llm-x0.25=+$W+$L:1" --arm "llm-x0.5=+$W+$L:2" --arm "llm-x1=+$W+$L:4" --out "$R/sweep"
done
