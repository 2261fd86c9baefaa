package testutil

import "encoding/binary"

// WAVHeader writes over the first 44 bytes of data a RIFF/WAVE header
// with a PCM fmt chunk (44.1 kHz, 16-bit stereo) and a data chunk of the
// rest: what music's tag reader takes for a WAV, so that tests can make
// tracks of any size from random bytes.
func WAVHeader(data []byte) {
	le := binary.LittleEndian
	copy(data, "RIFF")
	le.PutUint32(data[4:], uint32(len(data)-8))
	copy(data[8:], "WAVEfmt ")
	le.PutUint32(data[16:], 16)
	le.PutUint16(data[20:], 1)
	le.PutUint16(data[22:], 2)
	le.PutUint32(data[24:], 44100)
	le.PutUint32(data[28:], 44100*4)
	le.PutUint16(data[32:], 4)
	le.PutUint16(data[34:], 16)
	copy(data[36:], "data")
	le.PutUint32(data[40:], uint32(len(data)-44))
}
