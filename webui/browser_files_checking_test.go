package webui

import (
	"context"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/browsertest"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/shards"
)

// TestBrowserFilesChecking: a download that checks a file already saved
// under its name shows "Checking" and how much of it is checked, not
// "Downloading 0 %", in its row and in the table, from the list read and
// from events; when the check ends it shows the download again.
func TestBrowserFilesChecking(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	bravo := fakeID("bravo")
	node.setRecords(mesh.Record{ID: node.id, Name: "alpha"}, mesh.Record{ID: bravo, Name: "bravo"})
	files := newFakeFiles(node.id)
	f := files.addRemote("holiday.mkv", make([]byte, 1<<20), bravo)
	if _, err := files.Fetch(context.Background(), shards.Link{ID: f.ID, Name: f.Name, Size: f.Size}); err != nil {
		t.Fatal(err)
	}
	files.check(f.ID, "/home/me/Downloads/holiday.mkv", f.Size/4)
	ctx := filesPage(t, node, Config{Files: files}, "en-US")
	const wait = 20 * time.Second
	row := `document.querySelector('#files-transfers li[data-id="` + f.ID.String() + `"]')`
	shows := func(state, pct, stats string) string {
		return row + ` !== null && ` + row + `.querySelector(".transfer-state").textContent === "` + state + `"
			&& ` + row + `.querySelector(".progress").getAttribute("aria-valuenow") === "` + pct + `"
			&& ` + row + `.querySelector(".transfer-stats").textContent.startsWith("` + stats + `")
			&& document.querySelector('#files-table tr[data-id="` + f.ID.String() + `"] .badge')?.textContent === "` + state + `"`
	}
	if err := browsertest.Wait(ctx, wait, shows("Checking", "25", "256 KiB / 1 MiB · 25% · checking the file saved at /home/me/Downloads/holiday.mkv")); err != nil {
		t.Fatalf("a download checking a saved file, read with the list, does not show the check: %v", err)
	}
	files.check(f.ID, "/home/me/Downloads/holiday.mkv", f.Size/2)
	if err := browsertest.Wait(ctx, wait, shows("Checking", "50", "512 KiB / 1 MiB · 50% · checking")); err != nil {
		t.Fatalf("the check's progress event was not shown: %v", err)
	}
	files.check(f.ID, "", 0)
	if err := browsertest.Wait(ctx, wait, shows("Downloading", "0", "0 B / 1 MiB · 0%")+` && !`+row+`.hasAttribute("data-checking")`); err != nil {
		t.Fatalf("the download, its check ended, does not show as downloading again: %v", err)
	}
}
