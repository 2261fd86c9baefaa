package music

import (
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/shards"
)

// Track is one track of the mesh-wide library, as GET /api/music/tracks
// lists it: each MD5 once, with every online node that holds it.
type Track struct {
	MD5        shards.MD5 `json:"md5"`
	Title      string     `json:"title"`
	Artist     string     `json:"artist"`
	Album      string     `json:"album"`
	Track      int        `json:"track"`
	Year       int        `json:"year"`
	Duration   float64    `json:"duration"` // seconds
	Format     string     `json:"format"`   // "mp3", "flac", "wav"
	Bitrate    int        `json:"bitrate"`  // bits per second (average for VBR)
	SampleRate int        `json:"sample_rate"`
	Channels   int        `json:"channels"`
	Size       int64      `json:"size"`
	Name       string     `json:"name"` // file name
	// Local: a file of this node's music folders. Cached: fetched from
	// peers and kept in the data dir.
	Local  bool `json:"local"`
	Cached bool `json:"cached"`
	// CacheRemovable: the cached copy is one this node's player fetched
	// (music's cache), which DELETE .../cache removes. A copy the user
	// downloaded in the Files view is theirs: cached, but not removable
	// here, so the UI offers "remove cached copy" only where it works.
	CacheRemovable bool      `json:"cache_removable"`
	Sources        []mesh.ID `json:"sources"`
	HasCover       bool      `json:"has_cover"`
	HasLyrics      bool      `json:"has_lyrics"`
	Banned         bool      `json:"banned,omitempty"`
}

// Lyrics are a track's lyrics as GET /api/music/tracks/{md5}/lyrics
// returns them: synced lines (sorted by time) when the source had time
// tags, else the plain text as one line per text line with T = 0.
type Lyrics struct {
	Synced bool   `json:"synced"`
	Lines  []Line `json:"lines"`
	Raw    string `json:"raw"`
}

// Line is one line of lyrics, shown from T seconds into the track.
type Line struct {
	T    float64 `json:"t"`
	Text string  `json:"text"`
}

// ScanStatus is the progress of a scan of the music folders, as
// GET /api/music/scan reports it.
type ScanStatus struct {
	State  string      `json:"state"` // "idle", "scanning"
	Files  int         `json:"files"` // audio files found
	Done   int         `json:"done"`  // of them, read
	Bytes  int64       `json:"bytes"` // bytes hashed and parsed
	Errors []ScanError `json:"errors"`
}

// ScanError is a file the scan skipped, and why.
type ScanError struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// Event is the web UI's "music" event: the library changed (re-read it),
// or a scan made progress.
type Event struct {
	Library bool        `json:"library,omitempty"`
	Scan    *ScanStatus `json:"scan,omitempty"`
}
