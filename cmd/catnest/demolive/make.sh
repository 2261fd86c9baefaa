#!/bin/sh
# Makes the demo room's media: a 4 s test pattern (VP8 in IVF, a keyframe
# each second, so a new viewer has a picture within a second) and a 440 Hz
# tone (Opus in Ogg, one 20 ms packet per page, as pion's oggreader wants).
# Needs ffmpeg (Debian: apt-get install -y ffmpeg). Run it in this folder.
set -e
ffmpeg -y -loglevel error -f lavfi -i testsrc=size=320x180:rate=15:duration=4 \
	-c:v libvpx -b:v 200k -g 15 -keyint_min 15 -auto-alt-ref 0 -deadline good testpattern.ivf
ffmpeg -y -loglevel error -f lavfi -i sine=frequency=440:sample_rate=48000:duration=4 \
	-ac 2 -c:a libopus -b:a 32k -page_duration 20000 tone.ogg
