package webui

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/catnest/catnest/mesh"
)

func TestDirectoryEndpoint(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	base := startServer(t, Config{}, node)
	c := newClient(t)

	resp, body := do(t, c, newRequest(t, "GET", base+"/api/directory"))
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "[]" {
		t.Fatalf("empty directory: status %d, body %q, want []", resp.StatusCode, body)
	}

	heard := time.Date(2025, 3, 4, 5, 6, 7, 0, time.FixedZone("CET", 3600))
	twin0 := mesh.Record{ID: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", Name: "bravo", Heard: heard}
	twin1 := mesh.Record{ID: "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", Name: "bravo", Heard: heard}
	node.setRecords(
		fakeRecord("charlie", heard, map[string]string{"music": `{"tracks":12}`, "bad": `{not json`}, "alpha"),
		fakeRecord("alpha", heard, map[string]string{"chat": `{"channels":["general"]}`}, "charlie"),
		twin1, twin0, // no neighbours, no resources: nil slices and maps
	)

	resp, body = do(t, c, newRequest(t, "GET", base+"/api/directory"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}
	var got []map[string]json.RawMessage
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	var ids []string
	for _, r := range got {
		var id string
		json.Unmarshal(r["id"], &id)
		ids = append(ids, id)
	}
	wantIDs := []string{string(fakeID("alpha")), string(twin0.ID), string(twin1.ID), string(fakeID("charlie"))}
	if !slices.Equal(ids, wantIDs) {
		t.Fatalf("order %v, want %v (by name, then id)", ids, wantIDs)
	}

	// Every record has every field; arrays and objects are never null.
	for i, r := range got {
		for _, k := range []string{"id", "name", "seq", "neighbors", "resources", "heard", "self"} {
			if _, ok := r[k]; !ok {
				t.Errorf("record %d has no %q: %s", i, k, body)
			}
		}
		if n := string(r["neighbors"]); !strings.HasPrefix(n, "[") {
			t.Errorf("record %d: neighbors %s, want an array", i, n)
		}
		if res := string(r["resources"]); !strings.HasPrefix(res, "{") {
			t.Errorf("record %d: resources %s, want an object", i, res)
		}
		wantSelf := "false"
		if i == 0 {
			wantSelf = "true"
		}
		if self := string(r["self"]); self != wantSelf {
			t.Errorf("record %d (%s): self %s, want %s", i, ids[i], self, wantSelf)
		}
	}

	var alpha, charlie recordJSON
	if err := json.Unmarshal(mustMarshal(t, got[0]), &alpha); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(mustMarshal(t, got[3]), &charlie); err != nil {
		t.Fatal(err)
	}
	if alpha.Name != "alpha" || alpha.Seq != 1 || !slices.Equal(alpha.Neighbors, []mesh.ID{fakeID("charlie")}) ||
		string(alpha.Resources["chat"]) != `{"channels":["general"]}` {
		t.Errorf("alpha = %+v", alpha)
	}
	if !alpha.Heard.Equal(heard) || alpha.Heard.Location() != time.UTC {
		t.Errorf("heard %v, want %v in UTC", alpha.Heard, heard)
	}
	// A summary that is not JSON is null, not an error for the whole list.
	if string(charlie.Resources["bad"]) != "null" || string(charlie.Resources["music"]) != `{"tracks":12}` {
		t.Errorf("charlie resources %s", charlie.Resources)
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// nextDirectory waits for the next "directory" event and decodes it,
// skipping comments and other events.
func nextDirectory(t *testing.T, events <-chan sseEvent, timeout time.Duration) []recordJSON {
	t.Helper()
	return nextArray[recordJSON](t, events, "directory", timeout)
}

func recordNames(recs []recordJSON) string {
	var names []string
	for _, r := range recs {
		n := r.Name
		if r.Self {
			n += "*"
		}
		names = append(names, n)
	}
	return strings.Join(names, ",")
}

func TestEventsDirectory(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	now := time.Now()
	node.setRecords(fakeRecord("alpha", now, nil, "bravo"), fakeRecord("bravo", now, nil, "alpha"))
	const window = 300 * time.Millisecond
	base, _ := newEventServer(t, node, func(tm *timing) { tm.coalesceDirectory = window })
	events, _ := openEvents(t, newClient(t), base)

	if got := recordNames(nextDirectory(t, events, 5*time.Second)); got != "alpha*,bravo" {
		t.Fatalf("initial directory %q, want alpha*,bravo", got)
	}

	node.setRecords(fakeRecord("charlie", now, map[string]string{"chat": "{}"}, "bravo"))
	recs := nextDirectory(t, events, 5*time.Second)
	if got := recordNames(recs); got != "alpha*,bravo,charlie" {
		t.Fatalf("after join: directory %q, want alpha*,bravo,charlie", got)
	}
	if c := recs[2]; !slices.Equal(c.Neighbors, []mesh.ID{fakeID("bravo")}) || string(c.Resources["chat"]) != "{}" {
		t.Errorf("charlie = %+v", c)
	}

	node.removeRecord(fakeID("bravo"))
	if got := recordNames(nextDirectory(t, events, 5*time.Second)); got != "alpha*,charlie" {
		t.Fatalf("after leave: directory %q, want alpha*,charlie", got)
	}

	// A burst within the window is one event with the final state, sent no
	// sooner than the directory's own window; a peers change in the middle
	// goes out as its own event. The changes come back to back: spaced by
	// sleeps, a loaded machine stretched the burst past the window.
	start := time.Now()
	for _, name := range []string{"delta", "echo", "foxtrot"} {
		node.setRecords(fakeRecord(name, now, nil))
	}
	node.add(fakePeer("delta", time.Millisecond, true, now))
	var gotPeers, gotDir bool
	timeout := time.After(5 * time.Second)
	for !gotPeers || !gotDir {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("event stream ended")
			}
			switch ev.name {
			case "peers":
				gotPeers = true
			case "directory":
				var recs []recordJSON
				if err := json.Unmarshal([]byte(ev.data), &recs); err != nil {
					t.Fatal(err)
				}
				if got := recordNames(recs); got != "alpha*,charlie,delta,echo,foxtrot" {
					t.Fatalf("after burst: directory %q, want all in one event", got)
				}
				if d := time.Since(start); d < window {
					t.Errorf("directory event after %v, before its %v window ended", d, window)
				}
				gotDir = true
			}
		case <-timeout:
			t.Fatalf("after burst: peers event %v, directory event %v", gotPeers, gotDir)
		}
	}
	select {
	case ev := <-events:
		t.Fatalf("extra event after a coalesced burst: %+v", ev)
	case <-time.After(2 * window):
	}
}
