package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/catnest/catnest/internal/browsertest"
	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/music"
	"github.com/catnest/catnest/shards"
)

// TestServeMusicCacheFlag: --music-cache takes a size with a unit or
// none, 0 is a cache of nothing, and the default is music's.
func TestServeMusicCacheFlag(t *testing.T) {
	base := []string{"--signal", "http://127.0.0.1:9000/x"}
	for _, tt := range []struct {
		args []string
		want int64
	}{
		{nil, music.DefaultConfig().CacheLimit},
		{[]string{"--music-cache", "512MiB"}, 512 << 20},
		{[]string{"--music-cache", "3 GB"}, 3e9},
		{[]string{"--music-cache", "1000000"}, 1e6},
		{[]string{"--music-cache", "0"}, -1},
	} {
		cfg, err := parseServe(append(base, tt.args...), io.Discard)
		if err != nil || cfg.MusicCache != tt.want {
			t.Errorf("%q: %d, %v; want %d", tt.args, cfg.MusicCache, err, tt.want)
		}
	}
	if _, err := parseServe(append(base, "--music-cache", "lots"), io.Discard); err == nil || !strings.Contains(err.Error(), "want a size") {
		t.Errorf("--music-cache lots: %v", err)
	}
}

// TestServeMusicFlags: --music takes readable folders, refuses one that
// holds the data dir or is given twice, and shards shares each file once
// whether a music folder lies in a --share folder or holds one; the music
// service names its folders as shards names their files.
func TestServeMusicFlags(t *testing.T) {
	base := []string{"--signal", "http://127.0.0.1:9000/x"}
	dir := t.TempDir()
	musicDir := filepath.Join(dir, "Music")
	other := filepath.Join(dir, "Other")
	for _, d := range []string{musicDir, other, filepath.Join(musicDir, "Live")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := parseServe(append(base, "--data", filepath.Join(dir, "data"), "--music", musicDir, "--music", other), io.Discard)
	if err != nil || !slices.Equal(cfg.Music, []string{musicDir, other}) {
		t.Fatalf("--music twice: %+v, %v", cfg.Music, err)
	}
	file := filepath.Join(dir, "song.mp3")
	os.WriteFile(file, []byte("x"), 0o644)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--music", filepath.Join(dir, "missing")}, "no such file"},
		{[]string{"--music", file}, "not a directory"},
		{[]string{"--music", dir, "--data", filepath.Join(dir, "data")}, "data dir"},
		{[]string{"--music", musicDir, "--music", filepath.Join(musicDir, "Live")}, "overlap"},
	} {
		if _, err := parseServe(append(base, tt.args...), io.Discard); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want an error with %q", tt.args, err, tt.want)
		}
	}
	// A music folder reached through a symlink inside a shared folder.
	link := filepath.Join(other, "music-link")
	if err := os.Symlink(musicDir, link); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name                   string
		shares, music          []string
		wantFolders, wantMusic []string
	}{
		{"apart", []string{other}, []string{musicDir}, []string{other, musicDir}, []string{musicDir}},
		{"music in a share", []string{dir}, []string{musicDir}, []string{dir}, []string{musicDir}},
		{"share in music", []string{filepath.Join(musicDir, "Live")}, []string{musicDir}, []string{musicDir}, []string{musicDir}},
		{"the same", []string{musicDir}, []string{musicDir}, []string{musicDir}, []string{musicDir}},
		{"through a symlink", []string{musicDir}, []string{link}, []string{musicDir}, []string{musicDir}},
	} {
		folders, music := sharedFolders(tt.shares, tt.music)
		if !slices.Equal(folders, tt.wantFolders) || !slices.Equal(music, tt.wantMusic) {
			t.Errorf("%s: shards %q, music %q; want %q and %q", tt.name, folders, music, tt.wantFolders, tt.wantMusic)
		}
	}
	var out, errOut bytes.Buffer
	run(context.Background(), []string{"serve", "--help"}, &out, &errOut)
	for _, want := range []string{"-music DIR", "Music view"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("serve --help lacks %q:\n%s", want, errOut.String())
		}
	}
}

// writeChords writes a synthesised track and its .lrc into dir as
// name.wav and name.lrc and returns its MD5 and bytes.
func writeChords(t *testing.T, dir, name string, c chordTrack) (shards.MD5, []byte) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b := c.WAV()
	if err := os.WriteFile(filepath.Join(dir, name+".wav"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".lrc"), []byte(c.LRC()), 0o644); err != nil {
		t.Fatal(err)
	}
	return md5.Sum(b), b
}

// shortChords is a small track in key root, by artist.
func shortChords(title, artist string, root int) chordTrack {
	return chordTrack{Title: title, Artist: artist, Album: artist + " Tests", Track: 1, Year: 2025,
		Root: root, Degrees: []int{1, 4, 5, 1}, Beat: 1, Secs: 6, Rate: 8000}
}

// library is the node's music library by MD5; it fails the test if an
// MD5 is listed twice.
func (n *servedNode) library(t *testing.T) map[shards.MD5]music.Track {
	t.Helper()
	var ts []music.Track
	n.api(t, http.MethodGet, "api/music/tracks", nil, &ts)
	lib := make(map[shards.MD5]music.Track, len(ts))
	for _, tr := range ts {
		if _, ok := lib[tr.MD5]; ok {
			t.Fatalf("%s listed twice: %+v", tr.MD5, ts)
		}
		lib[tr.MD5] = tr
	}
	return lib
}

// waitLibrary polls the node's library until cond holds, and returns it
// with how long it took.
func (n *servedNode) waitLibrary(t *testing.T, what string, cond func(map[shards.MD5]music.Track) bool) (map[shards.MD5]music.Track, time.Duration) {
	t.Helper()
	var lib map[shards.MD5]music.Track
	took := testutil.WaitFor(t, 90*time.Second, what, func() bool {
		lib = n.library(t)
		if cond(lib) {
			return true
		}
		time.Sleep(100 * time.Millisecond)
		return false
	})
	return lib, took
}

// sameSources reports whether a track's sources are exactly ids.
func sameSources(tr music.Track, ids ...mesh.ID) bool {
	got := slices.Clone(tr.Sources)
	want := slices.Clone(ids)
	slices.Sort(got)
	slices.Sort(want)
	return slices.Equal(got, want)
}

// stream reads a whole track from the node's stream endpoint.
func (n *servedNode) stream(t *testing.T, id shards.MD5) (int, []byte) {
	t.Helper()
	return curl(t, http.MethodGet, n.ui+"api/music/tracks/"+id.String()+"/stream", n.key, nil)
}

// stop ends the node's process as Ctrl-C does, and waits for it.
func (n *servedNode) stop(t *testing.T) {
	t.Helper()
	n.proc.cmd.Process.Signal(os.Interrupt)
	n.proc.cmd.Wait()
}

// TestMusicLibraryAcrossNodes runs three real nodes: alice and carol
// share music folders that hold a track in common, bob none. bob's
// library lists each MD5 once with its sources; a track he played stays
// playable from his cache when carol leaves, while her other tracks leave
// with her; and adding, renaming and deleting files in alice's folder
// reaches bob's library.
func TestMusicLibraryAcrossNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	// The record TTL is the real one (65 s): carol's leaving is seen when
	// her links go, long before her record expires.
	signalURL := startSignalProc(t)
	aliceDir, carolDir := t.TempDir(), t.TempDir()
	x, _ := writeChords(t, filepath.Join(aliceDir, "Album"), "x", shortChords("Only Alice", "Alice", 0))
	both, bothBytes := writeChords(t, aliceDir, "both", shortChords("Both", "Duo", 1))
	if err := os.WriteFile(filepath.Join(carolDir, "both-copy.wav"), bothBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	z, zBytes := writeChords(t, carolDir, "z", shortChords("Played", "Carol", 2))
	w, _ := writeChords(t, carolDir, "w", shortChords("Not Played", "Carol", 3))

	alice := serveNode(t, signalURL, "alice", filepath.Join(t.TempDir(), "alice"), "--music", aliceDir)
	alice.proc.expect(t, `^music: `+regexp.QuoteMeta(aliceDir)+`$`)
	bob := serveNode(t, signalURL, "bob", filepath.Join(t.TempDir(), "bob"))
	carol := serveNode(t, signalURL, "carol", filepath.Join(t.TempDir(), "carol"), "--music", carolDir)

	lib, _ := bob.waitLibrary(t, "bob's library to hold every track with its sources", func(lib map[shards.MD5]music.Track) bool {
		return len(lib) == 4 && sameSources(lib[x], alice.id) && sameSources(lib[both], alice.id, carol.id) &&
			sameSources(lib[z], carol.id) && sameSources(lib[w], carol.id)
	})
	for id, tr := range lib {
		if tr.Local || tr.Cached || tr.Format != "wav" || tr.Duration < 5.9 || tr.Duration > 6.1 || !tr.HasLyrics {
			t.Errorf("bob's %s: %+v, want a remote 6 s WAV with lyrics", id, tr)
		}
	}
	if lib[x].Title != "Only Alice" || lib[z].Artist != "Carol" {
		t.Errorf("tags: %+v, %+v", lib[x], lib[z])
	}
	var ly music.Lyrics
	bob.api(t, http.MethodGet, "api/music/tracks/"+z.String()+"/lyrics", nil, &ly)
	if !ly.Synced || len(ly.Lines) != 6 || ly.Lines[2].Text != "Carol plays F♯ (3)" {
		t.Errorf("the lyrics of carol's track on bob: %+v", ly)
	}

	// bob plays z to its end: it is cached.
	if status, b := bob.stream(t, z); status != http.StatusOK || md5.Sum(b) != z {
		t.Fatalf("bob's stream of carol's track: %d, %d bytes with MD5 %x, want %d with %s", status, len(b), md5.Sum(b), len(zBytes), z)
	}
	bob.waitLibrary(t, "bob to list carol's track as cached", func(lib map[shards.MD5]music.Track) bool { return lib[z].Cached })

	// carol leaves: her track only she held goes, the one bob cached
	// stays and plays, the one alice holds too stays with alice alone.
	carol.stop(t)
	var lib2 map[shards.MD5]music.Track
	took := testutil.WaitFor(t, 30*time.Second, "carol's tracks to leave bob's library, well before her record expires", func() bool {
		lib2 = bob.library(t)
		_, hasW := lib2[w]
		if !hasW && sameSources(lib2[both], alice.id) {
			return true
		}
		time.Sleep(100 * time.Millisecond)
		return false
	})
	lib = lib2
	t.Logf("carol's tracks left bob's library %v after she stopped", took.Round(time.Millisecond))
	if tr, ok := lib[z]; !ok || !tr.Cached || tr.Title != "Played" {
		t.Errorf("bob's cached track after carol left: %+v (listed %v)", tr, ok)
	}
	if status, b := bob.stream(t, z); status != http.StatusOK || md5.Sum(b) != z {
		t.Errorf("bob's cached track after carol left: %d, %d bytes", status, len(b))
	}
	if status, _ := bob.stream(t, w); status != http.StatusNotFound {
		t.Errorf("carol's track after she left: %d, want 404", status)
	}

	// alice's folder changes: an added file, a renamed one, a deleted one.
	added, _ := writeChords(t, filepath.Join(aliceDir, "New"), "added", shortChords("Added Later", "Alice", 5))
	_, took = bob.waitLibrary(t, "alice's new file to reach bob", func(lib map[shards.MD5]music.Track) bool {
		return sameSources(lib[added], alice.id) && lib[added].Title == "Added Later"
	})
	t.Logf("a file added to alice's folder reached bob's library in %v", took.Round(time.Millisecond))
	if err := os.Rename(filepath.Join(aliceDir, "Album", "x.wav"), filepath.Join(aliceDir, "renamed.wav")); err != nil {
		t.Fatal(err)
	}
	_, took = bob.waitLibrary(t, "the renamed file to keep its track on bob", func(lib map[shards.MD5]music.Track) bool {
		return lib[x].Name == "renamed.wav" && lib[x].Title == "Only Alice" && sameSources(lib[x], alice.id)
	})
	t.Logf("a rename in alice's folder reached bob's library in %v", took.Round(time.Millisecond))
	if err := os.Remove(filepath.Join(aliceDir, "both.wav")); err != nil {
		t.Fatal(err)
	}
	_, took = bob.waitLibrary(t, "the deleted file to leave bob's library", func(lib map[shards.MD5]music.Track) bool {
		_, ok := lib[both]
		return !ok
	})
	t.Logf("a file deleted from alice's folder left bob's library in %v", took.Round(time.Millisecond))
	if lib := alice.library(t); !lib[x].Local || !lib[added].Local {
		t.Errorf("alice's own library: %+v", lib)
	}
}

// TestBrowserMusicAcrossNodes plays in Chromium, on bob's node which has
// no music, a track alice holds: its time advances, the lyrics highlight
// follows; carol joining the mesh with music of her own and leaving it
// again does not interrupt playback (no new load, time goes on); a seek
// to 75% plays from there; a track bob banned cannot be played.
func TestBrowserMusicAcrossNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	// The record TTL is the real one (65 s): carol's leaving is seen when
	// her links go, long before her record expires.
	signalURL := startSignalProc(t)
	aliceDir, carolDir := t.TempDir(), t.TempDir()
	// Long enough to play on while carol comes and goes, with the seek
	// to 75% well ahead of the download (at twice the track's rate).
	const secs = 300
	long, longBytes := writeChords(t, aliceDir, "long", chordTrack{Title: "Long Song", Artist: "Ann", Album: "First", Track: 1, Year: 2025,
		Root: 3, Degrees: []int{1, 5, 6, 4}, Beat: 1, Secs: secs, Rate: 8000})
	noise, _ := writeChords(t, aliceDir, "noise", shortChords("Noise", "Bad Band", 7))
	visit, _ := writeChords(t, carolDir, "visit", shortChords("Visiting", "Carol", 9))
	// 32 KiB/s, twice the track's rate: it plays long before it is all
	// here, and the seek comes before its last quarter.
	alice := serveNode(t, signalURL, "alice", filepath.Join(t.TempDir(), "alice"), "--music", aliceDir, "--upload-rate", "32KiB")
	bob := serveNode(t, signalURL, "bob", filepath.Join(t.TempDir(), "bob"))
	bob.waitLibrary(t, "alice's tracks on bob", func(lib map[shards.MD5]music.Track) bool {
		return sameSources(lib[long], alice.id) && sameSources(lib[noise], alice.id)
	})

	// The browser's context outlives DefaultTimeout: the test plays on
	// while carol comes and goes.
	ctx := browsertest.NewFor(t, 4*time.Minute)
	if err := chromedp.Do(ctx, chromedp.Navigate(bob.ui)); err != nil {
		t.Fatal(err)
	}
	clickSel(t, ctx, `.nav-link[data-view="music"]`)
	const wait = 60 * time.Second
	row := func(id shards.MD5) string {
		return `document.querySelector('#music-list .music-track[data-id="` + id.String() + `"]')`
	}
	browsertest.Until(t, ctx, wait, row(long)+` !== null && `+row(long)+`.dataset.where === "remote"`)

	clickSel(t, ctx, `#music-list .music-track[data-id="`+long.String()+`"] .music-name`)
	audio := `document.querySelector("#player-audio")`
	browsertest.Until(t, ctx, wait, audio+`.src.endsWith("/api/music/tracks/`+long.String()+`/stream")
		&& !`+audio+`.paused && `+audio+`.currentTime > 0.5
		&& `+row(long)+`.classList.contains("playing")
		&& document.querySelector("#player-title").textContent === "Long Song"`)
	// Count reloads of the audio element from here on: none may come.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => { window.loads = 0; `+audio+`.addEventListener("loadstart", () => window.loads++); return true; })()`)); err != nil {
		t.Fatal(err)
	}

	// The lyrics: a line a second, the highlighted one follows the time.
	clickSel(t, ctx, "#player-lyrics-btn")
	cur := `document.querySelector("#player-lyrics-lines li.current")`
	browsertest.Until(t, ctx, wait, `!document.querySelector("#player-lyrics").hidden && `+cur+` !== null
		&& `+cur+`.textContent.startsWith("Ann plays ")
		&& `+cur+`.textContent.endsWith("(" + (Math.floor(`+audio+`.currentTime + 0.05) + 1) + ")")`)
	first, err := chromedp.Run(ctx, chromedp.Evaluate[int](`Number(document.querySelector("#player").dataset.lyric)`))
	if err != nil {
		t.Fatal(err)
	}
	browsertest.Until(t, ctx, wait, fmt.Sprintf(`Number(document.querySelector("#player").dataset.lyric) >= %d`, first+2))

	// carol joins with music of her own, and leaves: bob's library
	// follows, his playback goes on undisturbed.
	now, _ := chromedp.Run(ctx, chromedp.Evaluate[float64](audio+`.currentTime`))
	carol := serveNode(t, signalURL, "carol", filepath.Join(t.TempDir(), "carol"), "--music", carolDir)
	browsertest.Until(t, ctx, wait, row(visit)+` !== null`)
	carol.stop(t)
	// A node that stops is offline when its directory record expires
	// (mesh Config.RecordTTL, 10 s here).
	browsertest.Until(t, ctx, wait, row(visit)+` === null`)
	browsertest.Until(t, ctx, wait, fmt.Sprintf(`!%s.paused && %s.currentTime > %f && window.loads === 0
		&& %s.classList.contains("playing")`, audio, audio, now+1, row(long)))

	// Seek to 75%: it plays from there. Where it landed is taken when it
	// lands, not polled.
	seekStart := time.Now()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => { window.seekedAt = undefined;
		`+audio+`.addEventListener("seeked", (e) => { window.seekedAt = e.target.currentTime; }, { once: true });
		const s = document.querySelector("#player-seek"); s.value = "750";
		s.dispatchEvent(new Event("input")); s.dispatchEvent(new Event("change")); return true; })()`)); err != nil {
		t.Fatal(err)
	}
	browsertest.Until(t, ctx, wait, `window.seekedAt !== undefined`)
	t.Logf("the seek to 75%% landed within %v (alice sends at 32 KiB/s)", time.Since(seekStart).Round(time.Millisecond))
	at, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`window.seekedAt`))
	if err != nil {
		t.Fatal(err)
	}
	if at < 0.75*secs-1 || at > 0.75*secs+1 {
		t.Errorf("the seek to 75%% landed at %.2fs of %ds", at, secs)
	}
	browsertest.Until(t, ctx, wait, fmt.Sprintf(`!%s.paused && %s.currentTime > %f
		&& Number(document.querySelector("#player").dataset.lyric) >= %d`, audio, audio, at+1, int(0.75*secs)))
	if dl, ok := bob.transfer(t, long); ok {
		t.Logf("bob had %d of %d bytes of the track after the seek played (%s)", dl.Have, len(longBytes), dl.State)
	}

	// A track bob bans is folded away and cannot be played.
	bob.api(t, http.MethodPut, "api/music/bans", map[string]any{"patterns": []string{"^Bad Band$"}}, nil)
	browsertest.Until(t, ctx, wait, row(noise)+` === null
		&& document.querySelector("#music-banned").textContent.startsWith("1 banned track hidden.")`)
	clickSel(t, ctx, "#music-banned-toggle")
	browsertest.Until(t, ctx, wait, row(noise)+` !== null && `+row(noise)+`.classList.contains("banned")`)
	// Clicked from script: the row may be under the player bar.
	browsertest.Until(t, ctx, wait, `(() => { const el = `+row(noise)+`.querySelector(".music-name");
		el.click(); return document.querySelector("#toast").textContent.includes("banned"); })()`)
	src, _ := chromedp.Run(ctx, chromedp.Evaluate[string](audio+`.src`))
	if !strings.HasSuffix(src, long.String()+"/stream") {
		t.Errorf("after clicking the banned track the player plays %s", src)
	}
	if status, _ := bob.stream(t, noise); status != http.StatusForbidden {
		t.Errorf("the banned track's stream: %d, want 403", status)
	}
}
