package shards

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
)

// TestFetchAgainReusesFile: removing a finished download keeps its file
// (the user's) and stops sharing it; fetching the same id again takes
// that file once it has checked every piece and the MD5, rather than
// download it all again into "name (2).ext". A file of the same name and
// size that is not the resource is left alone and not taken.
func TestFetchAgainReusesFile(t *testing.T) {
	testutil.CheckGoroutines(t)
	na, nb := newPair(t)
	a := serveTest(t, testConfig(t, na))
	bcfg := testConfig(t, nb)
	b := serveTest(t, bcfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	src := filepath.Join(t.TempDir(), "film.mkv")
	data := writeRandom(t, src, 2<<20+5, 4)
	link := shareLink(t, ctx, a, src)
	uploaded := func() int64 {
		tr, err := a.Transfer(ctx, link.ID)
		if err != nil {
			t.Fatal(err)
		}
		return tr.Uploaded
	}
	listed := func() bool {
		es, _ := b.catalog.entries()
		return slices.ContainsFunc(es, func(e Entry) bool { return e.ID == link.ID })
	}
	fetch := func() Transfer {
		t.Helper()
		if _, err := b.Fetch(ctx, link); err != nil {
			t.Fatal(err)
		}
		return waitState(t, b.downloads, link.ID, StateDone, 60*time.Second)
	}
	remove := func(path string) {
		t.Helper()
		if err := b.Remove(ctx, link.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Transfer(ctx, link.ID); !errors.Is(err, ErrUnknown) {
			t.Fatalf("removed download still listed: %v", err)
		}
		if listed() {
			t.Fatal("a removed download is still in the catalog: its file is still shared")
		}
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("removing a finished download deleted the user's file: %v", err)
		}
	}

	first := fetch()
	want := filepath.Join(bcfg.Dir, "downloads", "film.mkv")
	if first.Path != want || uploaded() != int64(len(data)) {
		t.Fatalf("first download at %s with %d bytes uploaded, want %s and %d", first.Path, uploaded(), want, len(data))
	}
	remove(want)

	again := fetch()
	if again.Path != want {
		t.Errorf("fetched again into %s, want the file already in %s", again.Path, want)
	}
	if got := uploaded(); got != int64(len(data)) {
		t.Errorf("the holder sent %d bytes in all, want %d: the file was downloaded again", got, len(data))
	}
	if !listed() {
		t.Error("the reused file is not in the catalog")
	}
	if ents, _ := os.ReadDir(filepath.Dir(want)); len(ents) != 1 {
		t.Errorf("downloads holds %d files, want 1", len(ents))
	}

	// Same name, same size, one byte changed: not the resource.
	remove(want)
	bad := append([]byte(nil), data...)
	bad[len(bad)-1] ^= 1
	if err := os.WriteFile(want, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	third := fetch()
	if third.Path != filepath.Join(bcfg.Dir, "downloads", "film (2).mkv") {
		t.Errorf("fetched beside a changed file into %s, want film (2).mkv", third.Path)
	}
	if got := uploaded(); got != 2*int64(len(data)) {
		t.Errorf("the holder sent %d bytes in all, want %d", got, 2*len(data))
	}
	if got, _ := os.ReadFile(want); string(got) != string(bad) {
		t.Error("the changed file was touched")
	}

	// A service's fetch is not handed the user's file: the service
	// deletes its own finished files (RemoveFor).
	remove(third.Path)
	svc := link
	svc.For = "music"
	if _, err := b.Fetch(ctx, svc); err != nil {
		t.Fatal(err)
	}
	fourth := waitState(t, b.downloads, link.ID, StateDone, 60*time.Second)
	if fourth.Path == third.Path {
		t.Errorf("a service's download took the user's file %s", third.Path)
	}
	gone, err := b.RemoveFor(ctx, link.ID, "music")
	if err != nil || gone.Path != fourth.Path {
		t.Fatalf("RemoveFor = %+v, %v", gone, err)
	}
}

// TestReuseShowsChecking: while a download checks a file already saved
// before it takes it, its transfer says so (Checking, and the bytes
// Checked so far, growing) and stays "downloading" for clients that know
// only the five states. A GiB's check showed "downloading 0 %" for seconds.
func TestReuseShowsChecking(t *testing.T) {
	testutil.CheckGoroutines(t)
	na, nb := newPair(t)
	a := serveTest(t, testConfig(t, na))
	bcfg := testConfig(t, nb)
	bcfg.Downloads.ProgressInterval = time.Nanosecond // an event a piece
	b := serveTest(t, bcfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	src := filepath.Join(t.TempDir(), "film.mkv")
	const size = 8<<20 + 5
	writeRandom(t, src, size, 9)
	link := shareLink(t, ctx, a, src)
	if _, err := b.Fetch(ctx, link); err != nil {
		t.Fatal(err)
	}
	first := waitState(t, b.downloads, link.ID, StateDone, 60*time.Second)
	if err := b.Remove(ctx, link.ID); err != nil {
		t.Fatal(err)
	}

	sub := b.SubscribeShards()
	defer sub.Close()
	if _, err := b.Fetch(ctx, link); err != nil {
		t.Fatal(err)
	}
	var checks []Transfer
	take := func(ev Event) bool {
		tr := ev.Transfer
		if tr == nil || tr.ID != link.ID {
			return false
		}
		if tr.Checking != "" {
			checks = append(checks, *tr)
		}
		return tr.State == StateDone
	}
	// A subscriber that falls behind (a loaded machine, -race) has the
	// newer events dropped, the done one too: the test waited for it
	// until its deadline. The state says it then.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var missed uint64 // Missed counts since its last call
	for done := false; !done; {
		select {
		case ev := <-sub.C():
			done = take(ev)
		case <-tick.C:
			missed += sub.Missed()
			if tr, _ := b.Transfer(ctx, link.ID); missed > 0 && tr.State == StateDone {
				for more := true; more; {
					select {
					case ev := <-sub.C():
						take(ev)
					default:
						more = false
					}
				}
				done = true
			}
		case <-ctx.Done():
			t.Fatalf("no done event; %d checking events, %d missed", len(checks), missed+sub.Missed())
		}
	}
	if tr := waitState(t, b.downloads, link.ID, StateDone, time.Second); tr.Path != first.Path || tr.Checking != "" {
		t.Fatalf("reused into %s (checking %q), want %s", tr.Path, tr.Checking, first.Path)
	}
	var mid, prev int64
	for _, c := range checks {
		if c.State != StateDownloading || c.Checking != first.Path || c.Checked < prev || c.Checked > size {
			t.Fatalf("checking event %+v after %d bytes checked", c, prev)
		}
		if c.Checked > 0 && c.Checked < size {
			mid++
		}
		prev = c.Checked
	}
	if mid < 2 {
		t.Fatalf("%d checking events part-way (of %d), want the check's progress", mid, len(checks))
	}
}
