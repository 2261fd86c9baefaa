package webui

import (
	"context"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/shards"
)

// TestFilesLeaveOutServiceTransfers: a download a service started for
// itself (music fetching a peer's cover, Link.For) is neither listed by
// GET /api/shards nor sent as a "shards" event; the user's are.
func TestFilesLeaveOutServiceTransfers(t *testing.T) {
	checkGoroutines(t)
	f := newFilesFixture(t)
	events, _ := openEvents(t, f.c, f.base)
	testutil.WaitFor(t, 10*time.Second, "the stream to subscribe", func() bool { return f.files.events.Len() == 1 })

	if _, err := f.files.Fetch(context.Background(), shards.Link{ID: f.cat.ID, For: "music"}); err != nil {
		t.Fatal(err)
	}
	f.want(201, "POST", "/api/shards/fetch", `{"id": "`+f.notes.ID.String()+`"}`)
	// Events come in order: the cover's would come before the user's.
	nextShards(t, events, func(v map[string]any) bool {
		tr, _ := v["transfer"].(map[string]any)
		if tr != nil && tr["id"] == f.cat.ID.String() {
			t.Fatalf("music's download of a cover was sent as an event: %v", tr)
		}
		return tr != nil && tr["id"] == f.notes.ID.String()
	})
	got := decode[[]map[string]any](t, f.want(200, "GET", "/api/shards", ""))
	if len(got) != 1 || got[0]["id"] != f.notes.ID.String() {
		t.Fatalf("GET /api/shards: %v, want the user's download alone", got)
	}
}
