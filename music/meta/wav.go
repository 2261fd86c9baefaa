package meta

import (
	"encoding/binary"
	"fmt"
	"io"
)

// maxInfoChunk bounds the RIFF LIST chunk read for INFO tags.
const maxInfoChunk = 1 << 20

// readWAV walks the RIFF chunks: fmt gives the sample format, data the
// length, LIST INFO the tags. Chunks are skipped by their size, never read
// whole except fmt and a LIST of at most maxInfoChunk.
func readWAV(r io.ReaderAt, size int64) (Info, error) {
	info := Info{Format: "wav"}
	var byteRate, dataLen int64
	var haveFmt, haveData bool
	off := int64(12)
	for off+8 <= size {
		var h [8]byte
		if _, err := r.ReadAt(h[:], off); err != nil {
			return Info{}, fmt.Errorf("%w: RIFF chunk header at %d: %w", ErrCorrupt, off, err)
		}
		id, n := string(h[:4]), int64(binary.LittleEndian.Uint32(h[4:]))
		off += 8
		switch id {
		case "fmt ":
			b, err := readFull(r, off, min(n, 64), 64)
			if err != nil || n < 16 {
				return Info{}, fmt.Errorf("%w: WAV fmt chunk of %d bytes", ErrCorrupt, n)
			}
			info.Channels = int(binary.LittleEndian.Uint16(b[2:]))
			info.SampleRate = int(binary.LittleEndian.Uint32(b[4:]))
			byteRate = int64(binary.LittleEndian.Uint32(b[8:]))
			haveFmt = true
		case "data":
			// A streamed WAV may say 0 or 0xFFFFFFFF: the data is what is there.
			dataLen, haveData = n, true
			if n == 0 || n > size-off {
				dataLen = size - off
			}
		case "LIST":
			if n >= 4 && n <= maxInfoChunk {
				b, err := readFull(r, off, n, maxInfoChunk)
				if err == nil && string(b[:4]) == "INFO" {
					riffInfo(b[4:], &info)
				}
			}
		}
		off += n + n&1
	}
	if !haveFmt || !haveData {
		return Info{}, fmt.Errorf("%w: WAV without fmt or data chunk", ErrCorrupt)
	}
	if byteRate <= 0 || info.SampleRate <= 0 || info.Channels <= 0 {
		return Info{}, fmt.Errorf("%w: WAV fmt of %d Hz, %d channels, %d bytes/s", ErrCorrupt, info.SampleRate, info.Channels, byteRate)
	}
	info.Duration = float64(dataLen) / float64(byteRate)
	info.Bitrate = int(byteRate * 8)
	return info, nil
}

// riffInfo reads the subchunks of a LIST INFO chunk.
func riffInfo(b []byte, info *Info) {
	for len(b) >= 8 {
		id, n := string(b[:4]), int(binary.LittleEndian.Uint32(b[4:]))
		b = b[8:]
		if n > len(b) {
			return
		}
		v := clean(latin1(trimNUL(b[:n])))
		if isUTF8(b[:n]) {
			v = clean(string(trimNUL(b[:n])))
		}
		switch id {
		case "INAM":
			setStr(&info.Title, v)
		case "IART":
			setStr(&info.Artist, v)
		case "IPRD":
			setStr(&info.Album, v)
		case "ITRK", "IPRT":
			if info.Track == 0 {
				info.Track = number(v)
			}
		case "ICRD":
			if info.Year == 0 {
				info.Year = number(v)
			}
		}
		b = b[min(len(b), n+n&1):]
	}
}

func trimNUL(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return b
}
