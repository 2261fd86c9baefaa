package webui

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/catnest/catnest/internal/pubsub"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/music"
	"github.com/catnest/catnest/shards"
)

// fakeMusic is a Music kept in memory, for the API and browser tests. It
// behaves like the service where the UI can tell: bans are regular
// expressions over title, artist, album and file name, a banned or unknown
// track does not stream, and every change is published as a "music"
// event. It is safe for concurrent use.
type fakeMusic struct {
	mu      sync.Mutex
	tracks  map[shards.MD5]*music.Track
	bytes   map[shards.MD5][]byte
	covers  map[shards.MD5]fakeCover
	lyrics  map[shards.MD5]music.Lyrics
	bans    []*regexp.Regexp
	scan    music.ScanStatus
	events  pubsub.Topic[music.Event]
	calls   []string // "setcover ID", "setlyrics ID", "removecache ID", "setbans N"
	opened  int      // stream readers open now
	streams map[shards.MD5]int
	seeks   map[shards.MD5][]int64 // where readers of a track started reading
	// throttle, when set, makes every read of a stream return at most
	// 4 KiB after waiting this long, like a reader whose pieces come from
	// a peer: the browser cannot have a track whole before it seeks.
	throttle time.Duration
	// stalled, when set, is published to each new subscription before
	// its reader starts, as if the reader had been too slow for them.
	stalled []music.Event
	// usersCopy are tracks whose copy the user downloaded: RemoveCache
	// refuses them, as music does.
	usersCopy map[shards.MD5]bool
	// aheads counts the opens of a track by StreamAhead (the player's
	// prefetch); paused are tracks whose download the user paused, which
	// StreamAhead refuses (music.ErrPaused) as music does.
	aheads map[shards.MD5]int
	paused map[shards.MD5]bool
}

type fakeCover struct {
	typ         string
	data, thumb []byte
}

var _ Music = (*fakeMusic)(nil)

func newFakeMusic() *fakeMusic {
	return &fakeMusic{
		tracks:  map[shards.MD5]*music.Track{},
		bytes:   map[shards.MD5][]byte{},
		covers:  map[shards.MD5]fakeCover{},
		lyrics:  map[shards.MD5]music.Lyrics{},
		streams: map[shards.MD5]int{},
		aheads:  map[shards.MD5]int{},
		paused:  map[shards.MD5]bool{},
		seeks:   map[shards.MD5][]int64{},
		scan:    music.ScanStatus{State: "idle"},
	}
}

// add puts a track with content b into the library; t's MD5, size and
// name are filled in when empty.
func (f *fakeMusic) add(t music.Track, b []byte) music.Track {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t.MD5 == (shards.MD5{}) {
		t.MD5 = md5.Sum(b)
	}
	if t.Size == 0 {
		t.Size = int64(len(b))
	}
	if t.Name == "" {
		t.Name = t.Title + "." + t.Format
	}
	f.tracks[t.MD5] = &t
	f.bytes[t.MD5] = b
	f.events.Publish(music.Event{Library: true})
	return t
}

// setLyrics gives a track lyrics, as a parsed LRC file would.
func (f *fakeMusic) setLyrics(id shards.MD5, l music.Lyrics) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lyrics[id] = l
	f.tracks[id].HasLyrics = true
}

func (f *fakeMusic) setCover(id shards.MD5, typ string, data, thumb []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.covers[id] = fakeCover{typ, data, thumb}
	f.tracks[id].HasCover = true
}

// setScan sets the scan status and publishes it.
func (f *fakeMusic) setScan(st music.ScanStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.scan = st
	f.events.Publish(music.Event{Scan: &st})
}

// setSources changes who holds a track, as nodes come and go.
func (f *fakeMusic) setSources(id shards.MD5, sources ...mesh.ID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tracks[id].Sources = sources
	f.events.Publish(music.Event{Library: true})
}

func (f *fakeMusic) callLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeMusic) openReaders() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.opened
}

// streamed returns how often a track was opened and where its readers
// started reading.
func (f *fakeMusic) streamed(id shards.MD5) (opens int, seeks []int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.streams[id], slices.Clone(f.seeks[id])
}

// banned reports whether a ban matches t; f.mu is held.
func (f *fakeMusic) banned(t *music.Track) bool {
	for _, re := range f.bans {
		for _, s := range []string{t.Title, t.Artist, t.Album, t.Name} {
			if re.MatchString(s) {
				return true
			}
		}
	}
	return false
}

// track returns a known track; f.mu is held.
func (f *fakeMusic) track(id shards.MD5) (*music.Track, error) {
	t, ok := f.tracks[id]
	if !ok {
		return nil, fmt.Errorf("track %s: %w", id, music.ErrUnknown)
	}
	return t, nil
}

func (f *fakeMusic) Tracks(ctx context.Context, banned bool) ([]music.Track, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []music.Track // nil when empty: the server must send []
	for _, t := range f.tracks {
		c := *t
		c.Sources = slices.Clone(t.Sources)
		if c.Banned = f.banned(t); c.Banned && !banned {
			continue
		}
		out = append(out, c)
	}
	return out, nil
}

func (f *fakeMusic) Stream(ctx context.Context, id shards.MD5) (shards.Content, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, err := f.track(id)
	if err != nil {
		return nil, err
	}
	if f.banned(t) {
		return nil, fmt.Errorf("stream %s: %w", id, music.ErrBanned)
	}
	f.opened++
	f.streams[id]++
	return &fakeStream{Reader: bytes.NewReader(f.bytes[id]), f: f, id: id, name: t.Name, size: t.Size, throttle: f.throttle}, nil
}

func (f *fakeMusic) StreamAhead(ctx context.Context, id shards.MD5) (shards.Content, error) {
	f.mu.Lock()
	paused := f.paused[id]
	if !paused {
		f.aheads[id]++
	}
	f.mu.Unlock()
	if paused {
		return nil, fmt.Errorf("stream %s: %w", id, music.ErrPaused)
	}
	return f.Stream(ctx, id)
}

// streamedAhead is how many times StreamAhead opened id.
func (f *fakeMusic) streamedAhead(id shards.MD5) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.aheads[id]
}

func (f *fakeMusic) Cover(ctx context.Context, id shards.MD5, thumb bool) (string, []byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.track(id); err != nil {
		return "", nil, err
	}
	c, ok := f.covers[id]
	if !ok {
		return "", nil, fmt.Errorf("cover of %s: %w", id, music.ErrNoCover)
	}
	if thumb && c.thumb != nil {
		return "image/jpeg", c.thumb, nil
	}
	return c.typ, c.data, nil
}

func (f *fakeMusic) SetCover(ctx context.Context, id shards.MD5, typ string, data []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "setcover "+id.String())
	t, err := f.track(id)
	if err != nil {
		return err
	}
	f.covers[id] = fakeCover{typ: typ, data: bytes.Clone(data)}
	t.HasCover = true
	f.events.Publish(music.Event{Library: true})
	return nil
}

func (f *fakeMusic) Lyrics(ctx context.Context, id shards.MD5) (music.Lyrics, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.track(id); err != nil {
		return music.Lyrics{}, err
	}
	l, ok := f.lyrics[id]
	if !ok {
		return music.Lyrics{}, fmt.Errorf("lyrics of %s: %w", id, music.ErrNoLyrics)
	}
	return l, nil
}

// SetLyrics keeps the text as unsynced lines: the fake has no LRC parser,
// and the UI only shows what the service returns.
func (f *fakeMusic) SetLyrics(ctx context.Context, id shards.MD5, raw string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "setlyrics "+id.String())
	t, err := f.track(id)
	if err != nil {
		return err
	}
	var lines []music.Line
	for l := range strings.Lines(raw) {
		lines = append(lines, music.Line{Text: strings.TrimRight(l, "\r\n")})
	}
	f.lyrics[id] = music.Lyrics{Lines: lines, Raw: raw}
	t.HasLyrics = true
	f.events.Publish(music.Event{Library: true})
	return nil
}

func (f *fakeMusic) Bans(ctx context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string // nil when empty: the server must send []
	for _, re := range f.bans {
		out = append(out, re.String())
	}
	return out, nil
}

func (f *fakeMusic) SetBans(ctx context.Context, patterns []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("setbans %d", len(patterns)))
	var res []*regexp.Regexp
	for _, p := range patterns {
		re, err := regexp.Compile(p)
		if err != nil {
			return fmt.Errorf("%w: %q: %v", music.ErrBadPattern, p, err)
		}
		res = append(res, re)
	}
	f.bans = res
	f.events.Publish(music.Event{Library: true})
	return nil
}

func (f *fakeMusic) RemoveCache(ctx context.Context, id shards.MD5) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "removecache "+id.String())
	t, err := f.track(id)
	if err != nil {
		return err
	}
	if f.usersCopy[id] {
		return fmt.Errorf("%w: %s", music.ErrUsersCopy, id)
	}
	if !t.CacheRemovable {
		// As the service answers when there is no copy of the player's.
		return fmt.Errorf("%w: no cached copy of %s", music.ErrUnknown, id)
	}
	t.Cached, t.CacheRemovable = false, false
	if !t.Local && len(t.Sources) == 0 {
		delete(f.tracks, id)
	}
	f.events.Publish(music.Event{Library: true})
	return nil
}

func (f *fakeMusic) Scan(ctx context.Context) (music.ScanStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.scan
	st.Errors = slices.Clone(st.Errors)
	return st, nil
}

const fakeMusicBuffer = 64

func (f *fakeMusic) SubscribeMusic() *pubsub.Subscription[music.Event] {
	sub := f.events.Subscribe(fakeMusicBuffer)
	f.mu.Lock()
	for _, ev := range f.stalled {
		f.events.Publish(ev)
	}
	f.mu.Unlock()
	return sub
}

// fakeStream reads a track of a fakeMusic and records where reads start.
type fakeStream struct {
	*bytes.Reader
	f        *fakeMusic
	id       shards.MD5
	name     string
	size     int64
	closed   bool
	seeked   bool // a read after a seek is recorded
	throttle time.Duration
}

func (s *fakeStream) Seek(offset int64, whence int) (int64, error) {
	n, err := s.Reader.Seek(offset, whence)
	s.seeked = true
	return n, err
}

func (s *fakeStream) Read(p []byte) (int, error) {
	if s.closed {
		return 0, io.ErrClosedPipe
	}
	if s.seeked {
		s.seeked = false
		off, _ := s.Reader.Seek(0, io.SeekCurrent)
		s.f.mu.Lock()
		s.f.seeks[s.id] = append(s.f.seeks[s.id], off)
		s.f.mu.Unlock()
	}
	if s.throttle > 0 {
		time.Sleep(s.throttle)
		p = p[:min(len(p), 4<<10)]
	}
	return s.Reader.Read(p)
}

func (s *fakeStream) Close() error {
	if !s.closed {
		s.closed = true
		s.f.mu.Lock()
		s.f.opened--
		s.f.mu.Unlock()
	}
	return nil
}

func (s *fakeStream) Name() string       { return s.name }
func (s *fakeStream) Size() int64        { return s.size }
func (s *fakeStream) ModTime() time.Time { return time.Time{} }

// testWAV is a mono 16-bit PCM WAV of secs seconds at rate Hz: a tone
// whose pitch is set by seed, so that tracks differ in their MD5.
func testWAV(secs float64, rate int, seed int) []byte {
	n := int(secs * float64(rate))
	var b bytes.Buffer
	le := func(v any) { binary.Write(&b, binary.LittleEndian, v) }
	b.WriteString("RIFF")
	le(uint32(36 + 2*n))
	b.WriteString("WAVEfmt ")
	le(uint32(16))
	le(uint16(1)) // PCM
	le(uint16(1)) // mono
	le(uint32(rate))
	le(uint32(2 * rate))
	le(uint16(2))
	le(uint16(16))
	b.WriteString("data")
	le(uint32(2 * n))
	freq := 220 + 20*float64(seed)
	for i := range n {
		le(int16(3000 * math.Sin(2*math.Pi*freq*float64(i)/float64(rate))))
	}
	return b.Bytes()
}
