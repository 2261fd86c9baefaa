package webui

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/catnest/catnest/shards"
)

// TestFilesSharesPaged: GET /api/shards with ?offset=&limit= pages through
// 2,500 transfers: each page an array of at most limit, in the order of
// the whole list (newest first), X-Total-Count the total, and the pages
// together the whole list. GET /api/shards/{id} is one transfer; bad
// paging and ids get a 400 that says why, an unknown id a 404.
func TestFilesSharesPaged(t *testing.T) {
	checkGoroutines(t)
	f := newFilesFixture(t)
	const n = 2500
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	f.files.mu.Lock()
	for i := range n {
		id := shards.MD5{byte(i >> 8), byte(i), 0xab}
		// Pairs share a time, so the id breaks ties.
		f.files.transfers[id] = &shards.Transfer{ID: id, Name: fmt.Sprintf("f%d.bin", i), Size: int64(i),
			State: shards.StateSeeding, Have: int64(i), Added: base.Add(time.Duration(i/2) * time.Second)}
	}
	f.files.mu.Unlock()

	resp, b := f.call("GET", "/api/shards", "")
	whole := decode[[]shards.Transfer](t, b)
	if resp.StatusCode != 200 || len(whole) != n || resp.Header.Get("X-Total-Count") != strconv.Itoa(n) {
		t.Fatalf("whole list: status %d, %d entries, total %q", resp.StatusCode, len(whole), resp.Header.Get("X-Total-Count"))
	}
	for i := 1; i < n; i++ {
		if whole[i].Added.After(whole[i-1].Added) {
			t.Fatalf("entry %d is newer than the one before it", i)
		}
	}
	var paged []shards.Transfer
	for off := 0; off < n; off += 1000 {
		resp, b := f.call("GET", fmt.Sprintf("/api/shards?offset=%d&limit=1000", off), "")
		page := decode[[]shards.Transfer](t, b)
		if resp.StatusCode != 200 || resp.Header.Get("X-Total-Count") != strconv.Itoa(n) || len(page) != min(1000, n-off) {
			t.Fatalf("page at %d: status %d, %d entries, total %q", off, resp.StatusCode, len(page), resp.Header.Get("X-Total-Count"))
		}
		paged = append(paged, page...)
	}
	for i := range whole {
		if paged[i].ID != whole[i].ID {
			t.Fatalf("paged entry %d is %s, the whole list has %s", i, paged[i].ID, whole[i].ID)
		}
	}
	if b := f.want(200, "GET", fmt.Sprintf("/api/shards?offset=%d", n+5), ""); string(b) != "[]\n" && string(b) != "[]" {
		t.Errorf("past the end: %s, want []", b)
	}
	if rest := decode[[]shards.Transfer](t, f.want(200, "GET", fmt.Sprintf("/api/shards?offset=%d", n-3), "")); len(rest) != 3 || rest[2].ID != whole[n-1].ID {
		t.Errorf("offset without a limit: %d entries, want the last 3", len(rest))
	}

	one := decode[shards.Transfer](t, f.want(200, "GET", "/api/shards/"+whole[7].ID.String(), ""))
	if one.ID != whole[7].ID || one.Name != whole[7].Name || one.Sources == nil || one.State != shards.StateSeeding {
		t.Errorf("GET one: %+v, want %+v with sources {}", one, whole[7])
	}

	f.refuses([]badInput{
		{"negative offset", "GET", "/api/shards?offset=-1", "", 400, "offset"},
		{"offset not a number", "GET", "/api/shards?offset=ten", "", 400, "offset"},
		{"zero limit", "GET", "/api/shards?limit=0", "", 400, "limit"},
		{"limit too large", "GET", "/api/shards?limit=1001", "", 400, "from 1 to 1000"},
		{"limit not a number", "GET", "/api/shards?limit=1e3", "", 400, "limit"},
		{"bad id", "GET", "/api/shards/xyz", "", 400, "not 32 hex digits"},
		{"unknown id", "GET", "/api/shards/" + shards.MD5{0xfe}.String(), "", 404, "unknown"},
	})
}

// TestFilesOnlinePaged: GET /api/files with ?offset=&limit= pages through
// 2,500 files of other nodes in the order of the whole list (by name),
// with X-Total-Count; the pages together are the whole list. Before, the
// parameters were ignored: each "page" was the whole list, and a script
// paging until a short page never stopped.
func TestFilesOnlinePaged(t *testing.T) {
	checkGoroutines(t)
	f := newFilesFixture(t)
	const n = 2500
	f.files.mu.Lock()
	clear(f.files.remote)
	for i := range n {
		id := shards.MD5{byte(i >> 8), byte(i), 0xcd}
		f.files.remote[id] = shards.File{ID: id, Name: fmt.Sprintf("f%05d.txt", i), Size: int64(i)}
	}
	f.files.mu.Unlock()

	resp, b := f.call("GET", "/api/files", "")
	whole := decode[[]shards.File](t, b)
	if resp.StatusCode != 200 || len(whole) != n || resp.Header.Get("X-Total-Count") != strconv.Itoa(n) {
		t.Fatalf("whole list: status %d, %d entries, total %q", resp.StatusCode, len(whole), resp.Header.Get("X-Total-Count"))
	}
	var paged []shards.File
	for off := 0; ; off += 1000 {
		resp, b := f.call("GET", fmt.Sprintf("/api/files?offset=%d&limit=1000", off), "")
		page := decode[[]shards.File](t, b)
		if resp.StatusCode != 200 || resp.Header.Get("X-Total-Count") != strconv.Itoa(n) || len(page) != min(1000, n-off) {
			t.Fatalf("page at %d: status %d, %d entries, total %q", off, resp.StatusCode, len(page), resp.Header.Get("X-Total-Count"))
		}
		paged = append(paged, page...)
		if len(page) < 1000 {
			break
		}
	}
	if len(paged) != n {
		t.Fatalf("pages hold %d files, want %d", len(paged), n)
	}
	for i := range whole {
		if paged[i].ID != whole[i].ID || paged[i].Holders == nil {
			t.Fatalf("paged entry %d is %+v, the whole list has %+v", i, paged[i], whole[i])
		}
	}
	if b := f.want(200, "GET", fmt.Sprintf("/api/files?offset=%d", n+5), ""); string(b) != "[]\n" && string(b) != "[]" {
		t.Errorf("past the end: %s, want []", b)
	}
	f.refuses([]badInput{
		{"negative offset", "GET", "/api/files?offset=-1", "", 400, "offset"},
		{"limit too large", "GET", "/api/files?limit=1001", "", 400, "from 1 to 1000"},
		{"limit not a number", "GET", "/api/files?limit=x", "", 400, "limit"},
	})
}
