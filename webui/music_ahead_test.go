package webui

import (
	"bytes"
	"testing"
)

// TestMusicStreamAhead: the player's prefetch (stream?ahead=1) reads
// through StreamAhead, which refuses a track whose download the user
// paused (409, and nothing read) while a plain stream, a play, reads it;
// a bad ahead is refused.
func TestMusicStreamAhead(t *testing.T) {
	checkGoroutines(t)
	f := newMusicFixture(t)
	stream := trackPath(f.remote.MD5, "stream")
	resp, b := f.call("GET", stream+"?ahead=1", "", "Range", "bytes=0-99")
	if resp.StatusCode != 206 || len(b) != 100 {
		t.Fatalf("prefetch: %d, %d bytes, want 206 and 100", resp.StatusCode, len(b))
	}
	if n := f.music.streamedAhead(f.remote.MD5); n != 1 {
		t.Errorf("prefetch opened the track ahead %d times, want 1", n)
	}
	f.music.mu.Lock()
	f.music.paused[f.remote.MD5] = true
	f.music.mu.Unlock()
	opens, _ := f.music.streamed(f.remote.MD5)
	f.refuses([]badInput{
		{"paused", "GET", stream + "?ahead=1", "", 409, "paused"},
		{"bad ahead", "GET", stream + "?ahead=yes", "", 400, "ahead"},
	})
	if now, _ := f.music.streamed(f.remote.MD5); now != opens {
		t.Errorf("a refused prefetch opened the track (%d opens, were %d)", now, opens)
	}
	// Playing it is what the user asked for.
	resp, b = f.call("GET", stream, "")
	if resp.StatusCode != 200 || !bytes.Equal(b, f.music.bytes[f.remote.MD5]) {
		t.Errorf("play of the paused track: %d, %d bytes", resp.StatusCode, len(b))
	}
}
