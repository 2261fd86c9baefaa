package webui

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/browsertest"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/shards"
	"github.com/chromedp/chromedp"
)

// TestBrowserFilesTransfersPaged: a node that shares 2,500 files. The
// Files view reads its transfers a page at a time (200, not the whole
// list), says how many there are, reads the next page on "more", and a
// file of its own that is in the table but not among the transfers read
// shows as seeding, not as one to download.
func TestBrowserFilesTransfersPaged(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	node.setRecords(mesh.Record{ID: node.id, Name: "alpha"})
	files := newFakeFiles(node.id)
	const n = 2500
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var oldest shards.File
	for i := range n {
		f := files.addRemote(fmt.Sprintf("mine-%05d.txt", i), []byte(fmt.Sprintf("mine %d", i)), node.id)
		files.mu.Lock()
		files.transfers[f.ID] = &shards.Transfer{ID: f.ID, Name: f.Name, Size: f.Size, Have: f.Size,
			State: shards.StateSeeding, Added: base.Add(time.Duration(i) * time.Second)}
		files.mu.Unlock()
		if i == 0 {
			oldest = f
		}
	}
	ctx := filesPage(t, node, Config{Files: files}, "en-US")
	const wait = 20 * time.Second
	browsertest.Until(t, ctx, wait, fmt.Sprintf(`document.querySelectorAll("#files-transfers li").length === 200
		&& document.querySelector("#files-transfers-more [data-more=transfers]").textContent.startsWith("Showing 200 of %d.")`, n))
	if got := files.pageCalls(); !slices.Contains(got, "0 200") || slices.Contains(got, "0 -1") {
		t.Errorf("the view read the transfers as %q, want pages of 200", got)
	}

	// The oldest file is not among the 200 newest transfers; the table
	// still shows it as this node's.
	row := `document.querySelector('#files-table tr[data-id="` + oldest.ID.String() + `"]')`
	browsertest.Until(t, ctx, wait, `document.querySelector("#files-search") !== null`)
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => { const s = document.querySelector("#files-search");
		s.value = "mine-00000"; s.dispatchEvent(new Event("input")); return true; })()`)); err != nil {
		t.Fatal(err)
	}
	browsertest.Until(t, ctx, wait, row+` !== null && `+row+`.querySelector('.badge[data-state="seeding"]') !== null
		&& `+row+`.querySelector('button[data-act="fetch"]') === null`)

	click(t, ctx, `#files-transfers-more button[data-act="more"]`)
	browsertest.Until(t, ctx, wait, fmt.Sprintf(`document.querySelectorAll("#files-transfers li").length === 400
		&& document.querySelector("#files-transfers-more [data-more=transfers]").textContent.startsWith("Showing 400 of %d.")`, n))
}
