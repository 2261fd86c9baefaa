#!/bin/sh
# Regenerates the keyframe test fixtures: 5 frames of ffmpeg's test
# pattern at 160x120, a keyframe every 3 frames (frames 0 and 3), in each
# video codec the live rooms negotiate. Needs ffmpeg with libvpx, libaom
# and libx264 (Debian's has them).
set -e
cd "$(dirname "$0")"
in="-f lavfi -i testsrc=size=160x120:rate=10 -frames:v 5 -pix_fmt yuv420p"
ff="ffmpeg -hide_banner -loglevel error -y"
$ff $in -c:v libvpx -g 3 -b:v 200k -auto-alt-ref 0 -lag-in-frames 0 vp8.ivf
$ff $in -c:v libvpx-vp9 -g 3 -b:v 200k -auto-alt-ref 0 -lag-in-frames 0 -deadline realtime vp9.ivf
$ff $in -c:v libaom-av1 -g 3 -cpu-used 8 -b:v 200k -lag-in-frames 0 av1.ivf
# repeat-headers: SPS and PPS before every IDR, as WebRTC senders do.
$ff $in -c:v libx264 -g 3 -bf 0 -preset ultrafast -x264-params repeat-headers=1 -f h264 h264.h264
