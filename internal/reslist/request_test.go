package reslist

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/mesh"
)

// asker is a node whose neighbours are linked, and which links to others
// on Expand unless refuse is set.
type asker struct {
	mu      sync.Mutex
	linked  map[mesh.ID]bool
	expands int
	refuse  error
	serve   func(to mesh.ID, proto string, payload []byte) []byte
	// deadlines are those of the contexts of each call, in order.
	deadlines []time.Time
}

func (a *asker) sawDeadline(ctx context.Context) {
	d, _ := ctx.Deadline()
	a.deadlines = append(a.deadlines, d)
}

func (a *asker) Request(ctx context.Context, to mesh.ID, proto string, payload []byte, opts ...mesh.SendOption) ([]byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sawDeadline(ctx)
	if !a.linked[to] {
		return nil, fmt.Errorf("request %s: %w", to.Short(), mesh.ErrNotConnected)
	}
	return a.serve(to, proto, payload), nil
}

func (a *asker) Expand(ctx context.Context, ids ...mesh.ID) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sawDeadline(ctx)
	a.expands++
	if a.refuse != nil {
		return a.refuse
	}
	for _, id := range ids {
		a.linked[id] = true
	}
	return nil
}

func TestRequestLinksFirst(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	near, far := mesh.ID("neighbour"), mesh.ID("stranger")
	a := &asker{linked: map[mesh.ID]bool{near: true}, serve: func(to mesh.ID, proto string, payload []byte) []byte {
		return []byte(string(to) + " " + proto + " " + string(payload))
	}}
	for _, to := range []mesh.ID{near, far, far} {
		b, err := Request(ctx, a, to, "list/1", []byte("p"), 10*time.Second)
		if want := string(to) + " list/1 p"; err != nil || string(b) != want {
			t.Fatalf("Request to %s: %q, %v; want %q", to, b, err, want)
		}
	}
	if a.expands != 1 {
		t.Fatalf("%d links made, want 1: only the stranger needs one, once", a.expands)
	}

	refused := errors.New("no route")
	b := &asker{linked: map[mesh.ID]bool{}, refuse: refused}
	_, err := Request(ctx, b, far, "list/1", nil, 10*time.Second)
	if !errors.Is(err, refused) || !strings.Contains(err.Error(), "link to") {
		t.Fatalf("Request over a refused link: %v; want the link's error", err)
	}
}

// TestRequestOneTimeoutOverBothTries: the link and the request after it
// share the one timeout, so a caller's RequestTimeout bounds the whole
// call (a stranger that links slowly cannot double it), and the caller's
// own earlier deadline still wins.
func TestRequestOneTimeoutOverBothTries(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	far := mesh.ID("stranger")
	serve := func(to mesh.ID, proto string, payload []byte) []byte { return []byte("ok") }
	a := &asker{linked: map[mesh.ID]bool{}, serve: serve}
	if _, err := Request(ctx, a, far, "list/1", nil, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if len(a.deadlines) != 3 {
		t.Fatalf("%d calls, want a request, a link and a request again", len(a.deadlines))
	}
	first := a.deadlines[0]
	if first.IsZero() || !first.Before(time.Now().Add(10*time.Second)) {
		t.Fatalf("the first try's deadline %v: want one within the timeout", first)
	}
	for i, d := range a.deadlines[1:] {
		if !d.Equal(first) {
			t.Fatalf("call %d has deadline %v, the first %v: want one deadline over both tries", i+2, d, first)
		}
	}

	b := &asker{linked: map[mesh.ID]bool{}, serve: serve}
	if _, err := Request(ctx, b, far, "list/1", nil, 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	want, _ := ctx.Deadline()
	for i, d := range b.deadlines {
		if !d.Equal(want) {
			t.Fatalf("call %d has deadline %v: want the caller's %v, which is earlier than the timeout", i+1, d, want)
		}
	}
}

func TestFingerprint(t *testing.T) {
	rec := func(id mesh.ID, lists map[string]Summary) mesh.Record {
		r := mesh.Record{ID: id, Resources: map[string]json.RawMessage{}}
		for name, sm := range lists {
			b, err := json.Marshal(sm)
			if err != nil {
				t.Fatal(err)
			}
			r.Resources[name] = b
		}
		return r
	}
	var dir []mesh.Record
	for i := range 40 {
		dir = append(dir, rec(mesh.ID(fmt.Sprint("node", i)), map[string]Summary{"music": {Count: i, Version: uint64(i)}, "files": {Count: 1, Version: 1}}))
	}
	base := Fingerprint(dir, "music")
	if Fingerprint(dir, "music") != base {
		t.Fatal("the same directory gave another fingerprint")
	}
	other := Fingerprint(dir, "files")
	dir[7] = rec(dir[7].ID, map[string]Summary{"music": {Count: 7, Version: 7}, "files": {Count: 2, Version: 9}})
	if Fingerprint(dir, "music") != base {
		t.Fatal("another list's change moved the fingerprint")
	}
	if Fingerprint(dir, "files") == other {
		t.Fatal("a list's new version kept the fingerprint")
	}
	dir[7] = rec(dir[7].ID, map[string]Summary{"music": {Count: 7, Version: 8}})
	if Fingerprint(dir, "music") == base {
		t.Fatal("a list's new version kept the fingerprint")
	}
	if Fingerprint(dir[:39], "music") == Fingerprint(dir, "music") {
		t.Fatal("a node going offline kept the fingerprint")
	}
}

// TestJSONPagesRemote: a Remote made by JSONPages.Remote asks for pages
// of MaxEntries through ask, decodes them with the pages' checks, and
// takes a node's whole list; a page that breaks a check is refused and
// its node scored down.
func TestJSONPagesRemote(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errPage := errors.New("bad page")
	pages := JSONPages[tentry]{MaxEntries: 64, MaxBytes: 64 << 10, Err: errPage, Key: key,
		Check: func(e tentry) error {
			if e.S == "evil" {
				return fmt.Errorf("%w: evil entry", errPage)
			}
			return nil
		}}
	l := filled(3000)
	var asked, penalties int
	var mu sync.Mutex
	cfg := RemoteConfig[tentry]{Name: "test", What: "test list", Cost: func(e tentry) int64 { return int64(len(e.S)) },
		Penalize: func(mesh.ID, string) { mu.Lock(); penalties++; mu.Unlock() },
		Cache:    4, MaxEntries: 10_000, MaxBytes: 4 << 20, Timeout: 30 * time.Second}
	evil := false
	rc := pages.Remote(cfg, func(ctx context.Context, node mesh.ID, req []byte) ([]byte, error) {
		after, limit, err := pages.DecodeRequest(req)
		if err != nil {
			return nil, err
		}
		if limit != pages.MaxEntries {
			t.Errorf("asked for %d entries a page, want %d", limit, pages.MaxEntries)
		}
		mu.Lock()
		asked++
		mu.Unlock()
		p := l.Page(after, limit)
		if evil {
			p.Entries[len(p.Entries)/2].S = "evil"
		}
		return pages.EncodePage(p)
	})
	got, err := rc.Get(ctx, "n1", l.Summary().Version)
	if err != nil || len(got) != 3000 {
		t.Fatalf("%d entries, %v; want 3000", len(got), err)
	}
	if want := (3000 + 63) / 64; asked != want {
		t.Fatalf("%d pages asked, want %d", asked, want)
	}
	evil = true
	l.Put(1, mk(5000, "x"))
	if _, err := rc.Get(ctx, "n1", l.Summary().Version); !errors.Is(err, errPage) || penalties == 0 {
		t.Fatalf("a page with an entry that breaks a check: %v, %d penalties; want it refused and scored down", err, penalties)
	}
}
