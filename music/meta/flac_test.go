package meta

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// TestFLACPictureLengthBounded: a PICTURE block of a few bytes declaring
// 100 MB of picture data is refused without allocating it (mewkiz/flac
// allocates any declared length up to 128 MB before reading, whatever the
// block's length says).
func TestFLACPictureLengthBounded(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(fixtures, "tagged.flac"))
	if err != nil {
		t.Fatal(err)
	}
	// fLaC, then STREAMINFO (4+34 bytes) made not last, then our PICTURE.
	head := bytes.Clone(b[:4+4+34])
	head[4] &^= 0x80
	pic := []byte{0, 0, 0, 3} // front cover
	pic = binary.BigEndian.AppendUint32(pic, 10)
	pic = append(pic, "image/jpeg"...)
	pic = binary.BigEndian.AppendUint32(pic, 0)       // description
	pic = append(pic, make([]byte, 16)...)            // width, height, depth, colours
	pic = binary.BigEndian.AppendUint32(pic, 100<<20) // data length
	pic = append(pic, "tiny"...)                      //
	block := append([]byte{0x80 | 6, 0, byte(len(pic) >> 8), byte(len(pic))}, pic...)
	file := append(append(head, block...), make([]byte, 4096)...)

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = Read(bytes.NewReader(file), int64(len(file)), "liar.flac")
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("err %v, want ErrCorrupt", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Errorf("allocated %d bytes for a declared 100 MB picture", alloc)
	}
}
