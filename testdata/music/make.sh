#!/bin/sh
# make.sh makes the music fixtures that music/meta and music/lrc test against
# (and that other packages and `catnest demo` may play). It needs Debian's
# lame, flac, sox, espeak-ng, imagemagick and python3-mutagen:
#   apt-get install -y lame flac sox espeak-ng imagemagick python3-mutagen
# The lengths are made exactly here (sox trim/pad), so the tests know the
# true durations: speech.wav and every file made from it are 12.000 s
# (MP3 and FLAC) and tone.wav 5.000 s. Run it from anywhere; it rewrites the
# fixtures beside it. Keep the total under 2 MB.
set -eu
# Debian's python3 has mutagen; a pyenv python3 earlier in PATH would not.
PATH=/usr/bin:/bin:$PATH
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The audio: spoken words over a quiet tone, exactly 12 s, 22050 Hz mono.
espeak-ng -s 140 -w "$tmp/voice.wav" "The cat sleeps in the nest. The nest is warm. Music for every node in the mesh."
sox "$tmp/voice.wav" -r 22050 -c 1 -b 16 "$tmp/speech.wav" pad 0.5 12 trim 0 12
sox -n -r 22050 -c 1 -b 16 "$tmp/tone.wav" synth 12 sine 440 vol 0.1
sox -m "$tmp/speech.wav" "$tmp/tone.wav" -b 16 "$tmp/mix.wav"

# A cover: a small gradient JPEG and PNG.
convert -size 300x300 gradient:orange-purple -quality 70 cover.jpg
convert -size 64x48 gradient:navy-gold folder.png

# MP3: CBR with an Info header and ID3v2.3 (UTF-16 text, a cover, lyrics).
lame --quiet -b 64 -m m "$tmp/mix.wav" "$tmp/cbr.mp3"
cp "$tmp/cbr.mp3" cbr_v23.mp3
python3 - <<'PY'
from mutagen.id3 import ID3, TIT2, TPE1, TALB, TRCK, TYER, APIC, USLT, Encoding
t = ID3()
t.add(TIT2(encoding=Encoding.UTF16, text="猫窝之歌"))
t.add(TPE1(encoding=Encoding.UTF16, text="The Nest Cats"))
t.add(TALB(encoding=Encoding.UTF16, text="Mesh Tunes"))
t.add(TRCK(encoding=Encoding.LATIN1, text="3/12"))
t.add(TYER(encoding=Encoding.LATIN1, text="2019"))
t.add(APIC(encoding=Encoding.UTF16, mime="image/jpeg", type=3, desc="Front", data=open("cover.jpg", "rb").read()))
t.add(USLT(encoding=Encoding.UTF16, lang="eng", desc="", text="[00:01.00]The cat sleeps\n[00:04.50]The nest is warm"))
t.save("cbr_v23.mp3", v2_version=3)
PY

# MP3: VBR with a Xing header and ID3v2.4 (UTF-8 text, a PNG cover).
lame --quiet -V 6 -m m "$tmp/mix.wav" vbr_xing_v24.mp3
python3 - <<'PY'
from mutagen.id3 import ID3, TIT2, TPE1, TALB, TRCK, TDRC, APIC, Encoding
t = ID3()
t.add(TIT2(encoding=Encoding.UTF8, text="Warm Nest"))
t.add(TPE1(encoding=Encoding.UTF8, text="Zoë"))
t.add(TALB(encoding=Encoding.UTF8, text="Mesh Tunes"))
t.add(TRCK(encoding=Encoding.UTF8, text="7"))
t.add(TDRC(encoding=Encoding.UTF8, text="2021-05-03"))
t.add(APIC(encoding=Encoding.UTF8, mime="image/png", type=3, desc="", data=open("folder.png", "rb").read()))
t.save("vbr_xing_v24.mp3", v2_version=4)
PY

# MP3: VBR without a Xing header (-t), only an ID3v1.1 tag: its length must
# be measured by walking the frame headers.
lame --quiet -V 6 -m m -t --id3v1-only --tt "No Header" --ta "Walker" --tl "Frames" --ty 2001 --tn 5 "$tmp/mix.wav" vbr_noxing_v1.mp3

# MP3: CBR without any header or tag, 44.1 kHz stereo MPEG-1.
sox "$tmp/mix.wav" -r 44100 -c 2 "$tmp/stereo.wav"
lame --quiet -b 32 --resample 44.1 -t "$tmp/stereo.wav" "$tmp/plain.mp3"
cp "$tmp/plain.mp3" cbr_plain.mp3

# FLAC: Vorbis comments, a picture and LYRICS, 11025 Hz to stay small.
sox "$tmp/mix.wav" -r 11025 "$tmp/mix11.wav"
flac --silent -f -8 -o tagged.flac \
  -T "TITLE=Flac Song" -T "ARTIST=Lossless Cat" -T "ALBUM=Mesh Tunes" \
  -T "TRACKNUMBER=2" -T "DATE=2020" \
  -T "LYRICS=[00:00.50]Flac line one
[00:03.00]Flac line two" \
  --picture="3||Front||cover.jpg" "$tmp/mix11.wav"

# WAV: 5 s, 8 kHz mono 16 bit, with a RIFF LIST INFO chunk.
sox -n -r 8000 -c 1 -b 16 "$tmp/tone8.wav" synth 5 sine 330 vol 0.2
python3 - "$tmp/tone8.wav" info.wav <<'PY'
import struct, sys
src = open(sys.argv[1], "rb").read()
# Keep the fmt and data chunks of sox's file, add LIST INFO.
chunks, i = {}, 12
while i + 8 <= len(src):
    cid, n = src[i:i+4], struct.unpack("<I", src[i+4:i+8])[0]
    chunks[cid] = src[i+8:i+8+n]; i += 8 + n + (n & 1)
def sub(cid, s):
    b = s.encode() + b"\0"
    return cid + struct.pack("<I", len(b)) + b + (b"\0" if len(b) & 1 else b"")
info = b"INFO" + sub(b"INAM", "Wave Tone") + sub(b"IART", "Riff Cat") + sub(b"IPRD", "Chunks") + sub(b"ITRK", "4") + sub(b"ICRD", "2018")
body = b"WAVE" + b"fmt " + struct.pack("<I", len(chunks[b"fmt "])) + chunks[b"fmt "] \
     + b"LIST" + struct.pack("<I", len(info)) + info \
     + b"data" + struct.pack("<I", len(chunks[b"data"])) + chunks[b"data"]
open(sys.argv[2], "wb").write(b"RIFF" + struct.pack("<I", len(body)) + body)
PY

# LRC: several time tags on a line, an offset, metadata; and plain lyrics.
cat > song.lrc <<'LRC'
[ti:Warm Nest]
[ar:Zoë]
[al:Mesh Tunes]
[by:make.sh]
[offset:+500]
[00:01.00][00:09.00]The cat sleeps
[00:04.50]The nest is warm
[00:07.25]Music for every node
LRC
printf 'The cat sleeps\nThe nest is warm\n' > plain.lrc

# Broken files.
head -c 3000 cbr_v23.mp3 > broken_truncated.mp3
head -c 2000 tagged.flac > broken_truncated.flac
printf 'This is a text file.\nIt is not music at all.\n' > broken_text.mp3
# An ID3v2.3 tag whose APIC frame says it is 1 GiB long, in a tiny file.
python3 - <<'PY'
import struct
def syncsafe(n): return bytes([(n >> 21) & 127, (n >> 14) & 127, (n >> 7) & 127, n & 127])
frame = b"TIT2" + struct.pack(">I", 5) + b"\0\0" + b"\0Huge" + b"APIC" + struct.pack(">I", 1 << 30) + b"\0\0" + b"\0image/jpeg\0\3\0" + b"\xff" * 64
tag = b"ID3\3\0\0" + syncsafe(len(frame)) + frame
open("broken_hugeframe.mp3", "wb").write(tag + open("cbr_plain.mp3", "rb").read()[:4096])
PY
rm -f "$tmp"/*
ls -l
du -cb . | tail -1
