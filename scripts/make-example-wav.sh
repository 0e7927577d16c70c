#!/usr/bin/env bash
# Re-creates the committed example question with espeak-ng (voice en-us, 140 wpm, 40 ms word gap; 16 kHz mono PCM).
set -euo pipefail
out=${1:-examples/what-is-the-capital-of-france.wav}
tmp=$(mktemp --suffix=.wav)
espeak-ng -v en-us -s 140 -g 4 -w "$tmp" "What is the capital of France?"
sox "$tmp" -r 16000 -c 1 -b 16 "$out"
rm -f "$tmp"
