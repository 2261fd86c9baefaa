package webui

import (
	"context"
	"encoding/json"
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/browsertest"
	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/music"
	"github.com/chromedp/chromedp"
)

// musicPage starts the web UI of node with m on loopback and a browser,
// opens the page and goes to the Music view.
func musicPage(t *testing.T, node Node, m Music, lang string) context.Context {
	t.Helper()
	base := startServer(t, Config{Version: "test", Music: m}, node)
	ctx := browsertest.New(t)
	if err := browsertest.SetLanguage(ctx, lang); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatal(err)
	}
	browsertest.Until(t, ctx, 10*time.Second, `document.querySelector('.nav-link[data-view="music"]') !== null`)
	click(t, ctx, `.nav-link[data-view="music"]`)
	return ctx
}

// eval runs a JS expression in the page and returns its value.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("eval %s: %v", expr, err)
	}
	return v
}

func trackRow(id string) string {
	return `document.querySelector('#music-list .music-track[data-id="` + id + `"]')`
}

// TestBrowserMusic plays a track in Chromium: time advances, the lyrics
// highlight follows it, a seek to 75% plays from there (with a Range
// request from there), the next track is fetched ahead, playback survives
// a view switch and peers coming and going, and a banned track cannot be
// played.
func TestBrowserMusic(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	bravo := fakeID("bravo")
	node.setRecords(mesh.Record{ID: node.id, Name: "alpha"}, mesh.Record{ID: bravo, Name: "bravo"})
	m := newFakeMusic()
	// Reads come at about 100 KB/s, six times the track's rate: the
	// browser cannot have fetched its last quarter when the test seeks.
	m.throttle = 40 * time.Millisecond
	const secs = 120
	long := m.add(music.Track{Title: "Long Song", Artist: "Ann", Album: "First", Track: 1, Duration: secs, Format: "wav",
		SampleRate: 8000, Channels: 1, Local: true, Sources: []mesh.ID{node.id}}, testWAV(secs, 8000, 1))
	far := m.add(music.Track{Title: "Far", Artist: "Ann", Album: "First", Track: 2, Duration: 3, Format: "wav",
		Sources: []mesh.ID{bravo}}, testWAV(3, 8000, 2))
	noise := m.add(music.Track{Title: "Noise", Artist: "Bad Band", Album: "Loud", Duration: 2, Format: "wav", Cached: true},
		testWAV(2, 8000, 3))
	var lines []music.Line
	for i := range secs {
		lines = append(lines, music.Line{T: float64(i), Text: fmt.Sprintf("line %d", i)})
	}
	m.setLyrics(long.MD5, music.Lyrics{Synced: true, Lines: lines})
	cover := testPNG(t, 64, 64, color.RGBA{200, 80, 40, 255})
	m.setCover(long.MD5, "image/png", cover, cover)
	ctx := musicPage(t, node, m, "en-US")
	const wait = 15 * time.Second

	browsertest.Until(t, ctx, wait, `document.querySelectorAll("#music-list .music-track").length === 3
		&& document.querySelectorAll("#music-list .music-group").length === 2
		&& document.querySelector("#music-count").textContent === "3 tracks"
		&& document.querySelector('#music-list .music-group img').naturalWidth === 64
		&& `+trackRow(far.MD5.String())+`.dataset.where === "remote"
		&& `+trackRow(noise.MD5.String())+`.querySelector(".badge-cached").textContent === "Cached"
		&& `+trackRow(long.MD5.String())+`.querySelector(".music-dur").textContent === "2:00"`)
	screenshot(t, ctx, "music-en")

	// Play: time advances and the row is highlighted.
	click(t, ctx, `#music-list .music-track[data-id="`+long.MD5.String()+`"] .music-name`)
	audio := `document.querySelector("#player-audio")`
	browsertest.Until(t, ctx, wait, `!document.querySelector("#player").hidden
		&& `+audio+`.src.endsWith("/api/music/tracks/`+long.MD5.String()+`/stream")
		&& !`+audio+`.paused && `+audio+`.currentTime > 0.3
		&& `+trackRow(long.MD5.String())+`.classList.contains("playing")
		&& document.querySelector("#player-title").textContent === "Long Song"
		&& navigator.mediaSession.metadata.title === "Long Song"
		&& navigator.mediaSession.metadata.artwork.length === 1`)
	// Count reloads of the audio element from here on: nothing below but
	// a new track may make one.
	eval[bool](t, ctx, `(() => { window.loads = 0; `+audio+`.addEventListener("loadstart", () => window.loads++); return true; })()`)

	// The next track is fetched ahead.
	browsertest.Until(t, ctx, wait, `document.querySelector("#player").dataset.prefetched === "`+far.MD5.String()+`"`)
	// As a prefetch (StreamAhead), which leaves a download the user
	// paused paused: only playing a track resumes it.
	testutil.WaitFor(t, wait, "the next track to be fetched ahead", func() bool {
		opens, _ := m.streamed(far.MD5)
		return opens > 0 && m.streamedAhead(far.MD5) > 0
	})

	// The lyrics: the highlighted line follows the time.
	click(t, ctx, "#player-lyrics-btn")
	cur := `document.querySelector("#player-lyrics-lines li.current")`
	browsertest.Until(t, ctx, wait, `!document.querySelector("#player-lyrics").hidden && `+cur+` !== null
		&& `+cur+`.textContent === "line " + Math.floor(`+audio+`.currentTime + 0.05)`)
	first := eval[int](t, ctx, `Number(document.querySelector("#player").dataset.lyric)`)
	browsertest.Until(t, ctx, wait, fmt.Sprintf(`Number(document.querySelector("#player").dataset.lyric) >= %d`, first+2))
	screenshotViewport(t, ctx, "music-playing-en")

	// Seek to 75%: it plays from there, read from there. Where the seek
	// landed is taken when it lands, not polled: a poll late on a loaded
	// machine must not find the time past a window.
	eval[bool](t, ctx, `(() => { window.seekedAt = undefined;
		`+audio+`.addEventListener("seeked", (e) => { window.seekedAt = e.target.currentTime; }, { once: true });
		const s = document.querySelector("#player-seek"); s.value = "750";
		s.dispatchEvent(new Event("input")); s.dispatchEvent(new Event("change")); return true; })()`)
	browsertest.Until(t, ctx, wait, `window.seekedAt !== undefined`)
	at := eval[float64](t, ctx, `window.seekedAt`)
	if at < 0.75*secs-1 || at > 0.75*secs+1 {
		t.Errorf("the seek to 75%% landed at %.2fs of %ds", at, secs)
	}
	browsertest.Until(t, ctx, wait, fmt.Sprintf(`%s.currentTime > %f && !%s.paused
		&& Number(document.querySelector("#player").dataset.lyric) >= %d
		&& %s.textContent === "line " + Math.floor(%s.currentTime + 0.05)
		&& document.querySelector("#player-seek").value >= 750`, audio, at+0.5, audio, int(0.75*secs), cur, audio))
	_, seeks := m.streamed(long.MD5)
	if !slices.ContainsFunc(seeks, func(off int64) bool { return off >= long.Size*7/10 && off < long.Size*8/10 }) {
		t.Errorf("reads of the track started at %v: none near 75%% of %d", seeks, long.Size)
	}

	// Another view, and back: the music plays on.
	click(t, ctx, `.nav-link[data-view="peers"]`)
	at = eval[float64](t, ctx, audio+`.currentTime`)
	browsertest.Until(t, ctx, wait, fmt.Sprintf(`document.querySelector("#view").dataset.view === "peers"
		&& !document.querySelector("#player").hidden && !%s.paused && %s.currentTime > %f`, audio, audio, at+0.5))
	click(t, ctx, `.nav-link[data-view="music"]`)
	browsertest.Until(t, ctx, wait, trackRow(long.MD5.String())+`.classList.contains("playing")`)

	// A peer comes and goes while it plays: the library changes, the
	// playback does not.
	at = eval[float64](t, ctx, audio+`.currentTime`)
	m.setSources(long.MD5, node.id, bravo)
	browsertest.Until(t, ctx, wait, trackRow(long.MD5.String())+` !== null`)
	m.setSources(long.MD5, node.id)
	m.setSources(far.MD5)
	m.setSources(far.MD5, bravo)
	browsertest.Until(t, ctx, wait, fmt.Sprintf(`!%s.paused && %s.currentTime > %f && window.loads === 0`, audio, audio, at+1))

	// The playing track clicked again (a double click): it plays on from
	// where it is, on the stream it has.
	at = eval[float64](t, ctx, audio+`.currentTime`)
	playingRow := `#music-list .music-track[data-id="` + long.MD5.String() + `"] .music-name`
	click(t, ctx, playingRow)
	click(t, ctx, playingRow)
	browsertest.Until(t, ctx, wait, fmt.Sprintf(`!%s.paused && %s.currentTime > %f`, audio, audio, at+1))
	if loads := eval[int](t, ctx, `window.loads`); loads != 0 {
		t.Errorf("clicking the playing track again loaded it %d times", loads)
	}

	// Next: the next track plays and is highlighted.
	click(t, ctx, "#player-next")
	browsertest.Until(t, ctx, wait, audio+`.src.endsWith("/api/music/tracks/`+far.MD5.String()+`/stream")
		&& `+audio+`.currentTime > 0.2
		&& `+trackRow(far.MD5.String())+`.classList.contains("playing")
		&& !`+trackRow(long.MD5.String())+`.classList.contains("playing")
		&& navigator.mediaSession.metadata.title === "Far"`)

	// A bad pattern is refused with the reason; nothing changes.
	click(t, ctx, "#music-bans-btn")
	browsertest.Until(t, ctx, wait, `!document.querySelector("#music-bans").hidden`)
	if err := chromedp.Do(ctx, chromedp.SendKeys("#music-bans-text", "(Bad")); err != nil {
		t.Fatal(err)
	}
	click(t, ctx, "#music-bans-save")
	browsertest.Until(t, ctx, wait, `document.querySelector("#music-bans-error").textContent.includes("missing closing )")`)
	if got, _ := m.Bans(context.Background()); len(got) != 0 {
		t.Errorf("a refused ban list was stored: %q", got)
	}
	// Ban the band: its track is folded away and cannot be played. (It
	// may have been fetched ahead before: it came after Far.)
	before, _ := m.streamed(noise.MD5)
	eval[bool](t, ctx, `(() => { document.querySelector("#music-bans-text").value = "^Bad Band$"; return true; })()`)
	click(t, ctx, "#music-bans-save")
	browsertest.Until(t, ctx, wait, trackRow(noise.MD5.String())+` === null
		&& document.querySelectorAll("#music-list .music-track").length === 2
		&& document.querySelector("#music-banned").textContent.startsWith("1 banned track hidden.")`)
	click(t, ctx, "#music-banned-toggle")
	browsertest.Until(t, ctx, wait, trackRow(noise.MD5.String())+`.classList.contains("banned")
		&& `+trackRow(noise.MD5.String())+`.querySelector(".badge-banned").textContent === "Banned"`)
	playing := eval[string](t, ctx, audio+`.src`)
	click(t, ctx, `#music-list .music-track[data-id="`+noise.MD5.String()+`"] .music-name`)
	browsertest.Until(t, ctx, wait, `document.querySelector("#toast").textContent.includes("banned")`)
	if now := eval[string](t, ctx, audio+`.src`); now != playing {
		t.Errorf("clicking a banned track played %s", now)
	}
	status, err := chromedp.Run(ctx, chromedp.Evaluate[int](`fetch("api/music/tracks/`+noise.MD5.String()+`/stream").then((r) => r.status)`, chromedp.EvalAwaitPromise))
	if err != nil || status != 403 {
		t.Errorf("the banned track's stream: %d (%v), want 403", status, err)
	}
	if opens, _ := m.streamed(noise.MD5); opens != before {
		t.Errorf("the banned track was opened %d times", opens-before)
	}
	screenshot(t, ctx, "music-banned-en")
}

// TestBrowserMusicAttach attaches a cover and lyrics to a track from
// files, and removes a cached copy; a track the user downloaded in the
// Files view is cached too, but offers no removal (the API refuses it).
func TestBrowserMusicAttach(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	m := newFakeMusic()
	far := m.add(music.Track{Title: "Far", Artist: "Ann", Album: "First", Duration: 1, Format: "wav",
		Sources: []mesh.ID{fakeID("bravo")}, Cached: true, CacheRemovable: true}, testWAV(1, 8000, 2))
	users := m.add(music.Track{Title: "Kept", Artist: "Ann", Album: "First", Duration: 1, Format: "wav",
		Sources: []mesh.ID{fakeID("bravo")}, Cached: true}, testWAV(1, 8000, 3))
	dir := t.TempDir()
	coverFile := filepath.Join(dir, "front.png")
	if err := os.WriteFile(coverFile, testPNG(t, 30, 30, color.RGBA{0, 90, 200, 255}), 0o644); err != nil {
		t.Fatal(err)
	}
	lrcFile := filepath.Join(dir, "far.lrc")
	if err := os.WriteFile(lrcFile, []byte("[00:00.00]far away\n[00:00.50]歌词\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := musicPage(t, node, m, "zh-CN")
	const wait = 15 * time.Second
	id := far.MD5.String()

	// The user's download: cached, its details offer no removal.
	uid := users.MD5.String()
	browsertest.Until(t, ctx, wait, trackRow(uid)+` !== null && `+trackRow(uid)+`.dataset.where === "cached"`)
	click(t, ctx, `#music-list button[data-act="detail"][data-id="`+uid+`"]`)
	browsertest.Until(t, ctx, wait, `!document.querySelector("#music-detail").hidden
		&& document.querySelector("#music-detail-title").textContent === "Kept"
		&& document.querySelector("#music-detail-close") !== null`)
	if eval[bool](t, ctx, `document.querySelector("#music-remove-cache") !== null`) {
		t.Error(`the details of the user's own download offer "remove cached copy", which the API refuses`)
	}

	browsertest.Until(t, ctx, wait, `document.querySelector("#music-title").textContent === "音乐"
		&& `+trackRow(id)+` !== null && `+trackRow(id)+`.querySelector(".badge-cached").textContent === "已缓存"`)
	click(t, ctx, `#music-list button[data-act="detail"][data-id="`+id+`"]`)
	browsertest.Until(t, ctx, wait, `!document.querySelector("#music-detail").hidden
		&& document.querySelector("#music-detail-title").textContent === "Far"`)

	if err := chromedp.Do(ctx, chromedp.SetUploadFiles("#music-cover-file", []string{coverFile})); err != nil {
		t.Fatal(err)
	}
	browsertest.Until(t, ctx, wait, `document.querySelector('#music-list .music-group img') !== null
		&& document.querySelector('#music-list .music-group img').naturalWidth === 30
		&& document.querySelector(".music-detail-cover").naturalWidth === 30`)
	if err := chromedp.Do(ctx, chromedp.SetUploadFiles("#music-lyrics-file", []string{lrcFile})); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, wait, "the lyrics to be attached", func() bool {
		l, err := m.Lyrics(context.Background(), far.MD5)
		return err == nil && strings.Contains(l.Raw, "歌词")
	})
	browsertest.Until(t, ctx, wait, `document.querySelector("#music-detail-status").textContent === "歌词已添加"`)
	screenshot(t, ctx, "music-detail-zh")

	// Scan progress and the files it skipped.
	m.setScan(music.ScanStatus{State: "scanning", Files: 10, Done: 4, Bytes: 3 << 20,
		Errors: []music.ScanError{{Path: "/music/bad.mp3", Reason: "not an MP3 file"}}})
	browsertest.Until(t, ctx, wait, `!document.querySelector("#music-scan").hidden
		&& document.querySelector("#music-scan-text").textContent === "正在扫描音乐文件夹：10 个文件中的 4 个，3 MiB"
		&& document.querySelector("#music-scan .progress").getAttribute("aria-valuenow") === "40"
		&& document.querySelector("#music-scan summary").textContent === "跳过了 1 个文件"
		&& document.querySelector("#music-scan li").textContent === "/music/bad.mp3: not an MP3 file"`)
	m.setScan(music.ScanStatus{State: "idle", Files: 10, Done: 10})
	browsertest.Until(t, ctx, wait, `document.querySelector("#music-scan").hidden`)

	// A library change that changes nothing the page shows (a scan's,
	// many a second) keeps the rows and the details as they are: one
	// drawn anew between a mousedown and its mouseup loses the click.
	eval[bool](t, ctx, `(() => { window.trackLoads = 0; const f = window.fetch;
		window.fetch = (...a) => { if (String(a[0]).startsWith("api/music/tracks?")) window.trackLoads++; return f(...a); };
		`+trackRow(id)+`.kept = true; document.querySelector("#music-remove-cache").kept = true; return true; })()`)
	for i := 1; i <= 2; i++ {
		m.events.Publish(music.Event{Library: true})
		browsertest.Until(t, ctx, wait, fmt.Sprintf(`window.trackLoads >= %d`, i))
	}
	if !eval[bool](t, ctx, trackRow(id)+`.kept === true && document.querySelector("#music-remove-cache").kept === true`) {
		t.Error("a library change that changed nothing drew the track's row or details anew")
	}

	// Remove the local copy: asked first.
	click(t, ctx, "#music-remove-cache")
	browsertest.Until(t, ctx, wait, `document.querySelector("#music-remove-cache").textContent === "删除缓存的副本？"`)
	click(t, ctx, "#music-remove-cache")
	browsertest.Until(t, ctx, wait, trackRow(id)+`.dataset.where === "remote"
		&& document.querySelector("#music-remove-cache") === null`)
	if log := m.callLog(); !slices.Contains(log, "removecache "+id) {
		t.Errorf("calls %v", log)
	}
}

// TestBrowserMusicAtScale: a library of 20,000 tracks is listed with only
// the rows in sight in the DOM; scrolling to the end and searching work.
func TestBrowserMusicAtScale(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	m := newFakeMusic()
	const artists, perArtist = 500, 40
	var last music.Track
	for a := range artists {
		for i := range perArtist {
			last = m.add(music.Track{Title: fmt.Sprintf("Song %02d", i+1), Artist: fmt.Sprintf("Artist %03d", a),
				Album: "Album", Track: i + 1, Duration: float64(120 + i), Format: "mp3",
				Sources: []mesh.ID{fakeID("bravo")}}, []byte(fmt.Sprintf("track %d %d", a, i)))
		}
	}
	ctx := musicPage(t, node, m, "en-US")
	const wait = 30 * time.Second
	const total = artists * perArtist

	browsertest.Until(t, ctx, wait, `document.querySelector("#music-count").textContent === "20,000 tracks"
		&& document.querySelectorAll("#music-list .music-track").length > 5`)
	rows := eval[int](t, ctx, `document.querySelectorAll("#music-list .music-row").length`)
	if rows > 60 {
		t.Errorf("%d rows in the DOM for %d tracks, want only those in sight", rows, total)
	}
	// Scroll to the end: the last track is drawn, and still few rows.
	eval[bool](t, ctx, `(() => { const l = document.querySelector("#music-list"); l.scrollTop = l.scrollHeight; return true; })()`)
	browsertest.Until(t, ctx, wait, trackRow(last.MD5.String())+` !== null
		&& document.querySelectorAll("#music-list .music-row").length <= 60`)
	screenshot(t, ctx, "music-scale-en")

	if err := chromedp.Do(ctx, chromedp.SendKeys("#music-search", "artist 123")); err != nil {
		t.Fatal(err)
	}
	browsertest.Until(t, ctx, wait, `document.querySelector("#music-count").textContent === "40 of 20,000 tracks"
		&& document.querySelectorAll("#music-list .music-group").length === 1`)
}

// TestBrowserMusicBannedElsewhere bans the playing track while another
// view is shown (as another tab or a script would): the player stops it,
// without the Music view that refreshes it.
func TestBrowserMusicBannedElsewhere(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	m := newFakeMusic()
	m.throttle = 40 * time.Millisecond // the stream stays open: the track is never had whole
	long := m.add(music.Track{Title: "Long Song", Artist: "Ann", Duration: 60, Format: "wav", Local: true,
		Sources: []mesh.ID{node.id}}, testWAV(60, 8000, 1))
	ctx := musicPage(t, node, m, "en-US")
	const wait = 15 * time.Second
	audio := `document.querySelector("#player-audio")`
	click(t, ctx, `#music-list .music-track[data-id="`+long.MD5.String()+`"] .music-name`)
	browsertest.Until(t, ctx, wait, `!`+audio+`.paused && `+audio+`.currentTime > 0.3`)
	click(t, ctx, `.nav-link[data-view="peers"]`)
	browsertest.Until(t, ctx, wait, `document.querySelector("#view").dataset.view === "peers" && !`+audio+`.paused`)

	if err := m.SetBans(context.Background(), []string{"^Long Song$"}); err != nil {
		t.Fatal(err)
	}
	browsertest.Until(t, ctx, wait, audio+`.paused && !`+audio+`.hasAttribute("src")
		&& document.querySelector("#player-status").textContent.includes("banned")`)
	// Play (the button, as the media keys do) asks the node again, which
	// refuses.
	opens, _ := m.streamed(long.MD5)
	click(t, ctx, "#player-play")
	browsertest.Until(t, ctx, wait, audio+`.hasAttribute("src") && `+audio+`.error !== null
		&& document.querySelector("#player-status").textContent.includes("banned")`)
	if now, _ := m.streamed(long.MD5); now != opens {
		t.Errorf("the banned track was opened %d times after its ban", now-opens)
	}
}

// TestBrowserMusicHostileText: a peer's title, artist, album, file name
// and lyrics are shown as text wherever they appear (list, details,
// player, lyrics), never parsed as HTML.
func TestBrowserMusicHostileText(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	m := newFakeMusic()
	const bad = `<img src=x onerror="window.pwned=1">`
	tr := m.add(music.Track{Title: bad, Artist: `<b onmouseover="window.pwned=2">A</b>`, Album: `</div><script>window.pwned=3</script>`,
		Name: `<svg onload="window.pwned=4">.wav`, Duration: 5, Format: "wav", Sources: []mesh.ID{fakeID("bravo")}},
		testWAV(5, 8000, 1))
	m.setLyrics(tr.MD5, music.Lyrics{Synced: true, Lines: []music.Line{{T: 0, Text: `<img src=y onerror="window.pwned=5">`}}})
	ctx := musicPage(t, node, m, "en-US")
	const wait = 15 * time.Second
	id := tr.MD5.String()
	browsertest.Until(t, ctx, wait, trackRow(id)+` !== null && `+trackRow(id)+`.querySelector(".music-name").textContent === `+jsString(bad))
	click(t, ctx, `#music-list button[data-act="detail"][data-id="`+id+`"]`)
	click(t, ctx, `#music-list .music-track[data-id="`+id+`"] .music-name`)
	click(t, ctx, "#player-lyrics-btn")
	browsertest.Until(t, ctx, wait, `document.querySelector("#music-detail-title").textContent === `+jsString(bad)+`
		&& document.querySelector("#player-title").textContent === `+jsString(bad)+`
		&& document.querySelector("#player-lyrics-lines li.current") !== null
		&& document.querySelector("#player-lyrics-lines li.current").textContent.startsWith("<img")`)
	if n := eval[int](t, ctx, `document.querySelectorAll("#music-list img, #music-detail img:not(.music-detail-cover), #player img, svg[onload], script:not([src]), b[onmouseover]").length`); n != 0 {
		t.Errorf("%d elements made of a peer's text", n)
	}
	if p := eval[string](t, ctx, `String(window.pwned)`); p != "undefined" {
		t.Errorf("a peer's text ran as script: window.pwned = %s", p)
	}
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
