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

// flacPicture is a PICTURE block (not last) of the given picture type
// holding data.
func flacPicture(kind uint32, data []byte) []byte {
	pic := binary.BigEndian.AppendUint32(nil, kind)
	pic = binary.BigEndian.AppendUint32(pic, 10)
	pic = append(pic, "image/jpeg"...)
	pic = binary.BigEndian.AppendUint32(pic, 0)
	pic = append(pic, make([]byte, 16)...)
	pic = binary.BigEndian.AppendUint32(pic, uint32(len(data)))
	pic = append(pic, data...)
	return append([]byte{6, byte(len(pic) >> 16), byte(len(pic) >> 8), byte(len(pic))}, pic...)
}

// TestFLACManyPictures: a file of many large pictures keeps one in memory
// (the front cover, wherever it stands), not all of them.
func TestFLACManyPictures(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(fixtures, "tagged.flac"))
	if err != nil {
		t.Fatal(err)
	}
	file := bytes.Clone(b[:4+4+34])
	file[4] &^= 0x80
	big := bytes.Repeat([]byte{0xaa}, 1<<20)
	for i := 0; i < 40; i++ {
		kind := uint32(4) // back cover
		if i == 20 {
			kind = 3
		}
		file = append(file, flacPicture(kind, big[:len(big)-i])...)
	}
	file = append(file, 0x81, 0, 0, 0) // last: empty PADDING
	file = append(file, make([]byte, 4096)...)

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	info, err := Read(bytes.NewReader(file), int64(len(file)), "gallery.flac")
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Cover) != len(big)-20 || info.CoverType != "image/jpeg" {
		t.Errorf("cover of %d bytes %q, want the front cover of %d", len(info.Cover), info.CoverType, len(big)-20)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
		t.Errorf("allocated %d MB reading 40 pictures of 1 MB", alloc>>20)
	}
}

// TestFLACManyBlocks: a file of a million empty metadata blocks is refused
// after maxFLACBlocks of them.
func TestFLACManyBlocks(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(fixtures, "tagged.flac"))
	if err != nil {
		t.Fatal(err)
	}
	file := bytes.Clone(b[:4+4+34])
	file[4] &^= 0x80
	file = append(file, bytes.Repeat([]byte{1, 0, 0, 0}, 1<<20)...)
	file = append(file, 0x81, 0, 0, 0)
	reads := &countingReader{r: bytes.NewReader(file)}
	if _, err := Read(reads, int64(len(file)), "blocks.flac"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("err %v, want ErrCorrupt", err)
	}
	if reads.n > 4*maxFLACBlocks {
		t.Errorf("%d reads", reads.n)
	}
}

type countingReader struct {
	r *bytes.Reader
	n int
}

func (c *countingReader) ReadAt(b []byte, off int64) (int, error) {
	c.n++
	return c.r.ReadAt(b, off)
}
