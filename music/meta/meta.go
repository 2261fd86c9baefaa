// Package meta reads the tags and audio properties of MP3, FLAC and WAV
// files: what the music library shows. Every parser bounds what it reads
// (a tag frame of a gigabyte is refused, not allocated) and is fuzzed.
package meta

// Info is what a file says about itself.
type Info struct {
	Format     string  // "mp3", "flac", "wav"
	Title      string  // from the tags; empty when untagged
	Artist     string  //
	Album      string  //
	Track      int     // track number, 0 if unknown
	Year       int     // 0 if unknown
	Duration   float64 // seconds, within 1% of the truth
	SampleRate int     // Hz
	Channels   int     //
	Bitrate    int     // bits per second; the average for VBR
	// Cover is an embedded picture (APIC, FLAC PICTURE): its MIME type and
	// bytes; nil if none. At most MaxCover bytes are kept.
	CoverType string
	Cover     []byte
	// Lyrics are embedded lyrics (USLT, a LYRICS comment), LRC or plain.
	Lyrics string
}
