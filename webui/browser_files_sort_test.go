package webui

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/catnest/catnest/internal/browsertest"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/shards"
)

// TestBrowserFilesSortAtScale: 20,000 files, sorted by holders, size and
// name in turn while events change the holders of hundreds of them, then
// searched and paged. The table must show exactly the first rows of the
// sorted list each time (the rows are moved in place, not redrawn: a row
// left behind or out of place would show there).
func TestBrowserFilesSortAtScale(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	bravo, charlie, dave := fakeID("bravo"), fakeID("charlie"), fakeID("dave")
	node.setRecords(mesh.Record{ID: node.id, Name: "alpha"}, mesh.Record{ID: bravo, Name: "bravo"},
		mesh.Record{ID: charlie, Name: "charlie"}, mesh.Record{ID: dave, Name: "dave"})
	files := newFakeFiles(node.id)
	const many = 20000
	body := func(i int) []byte { return []byte(fmt.Sprintf("%0*d", 8+i%37, i)) }
	holders := func(i, r int) []mesh.ID {
		h := []mesh.ID{bravo}
		if (i+r)%3 == 0 {
			h = append(h, charlie)
		}
		if (i+r)%7 == 0 {
			h = append(h, dave)
		}
		return h
	}
	for i := range many {
		files.addRemote(fmt.Sprintf("doc-%05d.txt", i), body(i), holders(i, 0)...)
	}
	// Seven sorts, searches and pages of 20,000 files: 33 s alone under
	// -race, 63 s on a loaded machine, past the browser's default minute.
	ctx, _ := holdingPageFor(t, 4*time.Minute, node, Config{Files: files}, "en-US", "files", false)
	const wait = 30 * time.Second
	browsertest.Until(t, ctx, wait, `document.querySelector("#files-count")?.textContent === "20000 files online"
		&& document.querySelectorAll("#files-table tbody tr").length === 500`)
	sortBy, query, limit := "name", "", 500
	// want is what the table should show: the server's order (name, then
	// id), sorted stably as the view sorts (the names are lower-case
	// ASCII, where the view's Intl.Collator agrees with strings.Compare).
	want := func() []string {
		fs, _ := files.Files(context.Background())
		slices.SortFunc(fs, func(a, b shards.File) int {
			return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.ID.String(), b.ID.String()))
		})
		fs = slices.DeleteFunc(fs, func(f shards.File) bool { return !strings.Contains(f.Name, query) })
		switch sortBy {
		case "holders":
			slices.SortStableFunc(fs, func(a, b shards.File) int {
				return cmp.Or(len(b.Holders)-len(a.Holders), strings.Compare(a.Name, b.Name))
			})
		case "size":
			slices.SortStableFunc(fs, func(a, b shards.File) int { return cmp.Compare(b.Size, a.Size) })
		}
		var ids []string
		for _, f := range fs[:min(limit, len(fs))] {
			ids = append(ids, f.ID.String())
		}
		return ids
	}
	shown := func() []string {
		got, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#files-table tbody tr")].map((r) => r.dataset.id)`))
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	check := func(step string) {
		t.Helper()
		var got, w []string
		if err := func() error {
			deadline := time.Now().Add(wait / 2)
			for time.Now().Before(deadline) {
				got, w = shown(), want()
				if slices.Equal(got, w) {
					return nil
				}
				time.Sleep(200 * time.Millisecond)
			}
			return fmt.Errorf("timeout")
		}(); err != nil {
			n := 0
			for n < min(len(got), len(w)) && got[n] == w[n] {
				n++
			}
			t.Fatalf("%s: the table shows %d rows, want %d; first difference at %d", step, len(got), len(w), n)
		}
		t.Logf("%s: ok (%d rows)", step, len(got))
	}
	setSort := func(k string) {
		sortBy, limit = k, 500
		checkJS(t, ctx, `(() => { const s = document.querySelector("#files-sort"); s.value = "`+k+`"; s.dispatchEvent(new Event("change")); return true; })()`, "")
	}
	// churn changes the holders of one file in 97, an event each.
	churn := func(r int) {
		for i := 0; i < many; i += 97 {
			files.addRemote(fmt.Sprintf("doc-%05d.txt", i), body(i), holders(i, r)...)
		}
	}
	check("name")
	for r, k := range []string{"holders", "size", "name", "holders"} {
		setSort(k)
		churn(r + 1)
		check(k + " while holders change")
	}
	query = "doc-1"
	limit = 500
	checkJS(t, ctx, `(() => { const s = document.querySelector("#files-search"); s.value = "doc-1"; s.dispatchEvent(new Event("input")); return true; })()`, "")
	churn(9)
	check("search")
	click(t, ctx, `#files-all button[data-act="more"]`)
	limit = 1000
	churn(10)
	check("more rows")
	setSort("size")
	query = "doc-1"
	churn(11)
	check("size, searched")
}
