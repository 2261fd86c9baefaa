package shards

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
)

// TestSharesPageUserDownloadServiceShare: the user's finished download
// whose bytes music then shares for itself (a cover) stays in the user's
// Files page: the page dropped a download that was also shared, and
// the share was music's, so the user's file was listed nowhere.
func TestSharesPageUserDownloadServiceShare(t *testing.T) {
	testutil.CheckGoroutines(t)
	a, b := newPair(t)
	sa := serveTest(t, testConfig(t, a))
	sb := serveTest(t, testConfig(t, b))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	dir := t.TempDir()
	data := writeRandom(t, filepath.Join(dir, "holiday.jpg"), 200<<10, 63)
	l := shareLink(t, ctx, sa, filepath.Join(dir, "holiday.jpg"))
	if _, err := sb.Fetch(ctx, l); err != nil {
		t.Fatal(err)
	}
	waitState(t, sb.downloads, l.ID, StateDone, time.Minute)
	coverPath := filepath.Join(t.TempDir(), "0123abcd.jpg")
	if err := os.WriteFile(coverPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.ShareFor(ctx, coverPath, "music"); err != nil {
		t.Fatal(err)
	}
	page, total, err := sb.SharesPage(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if total != 1 || len(page) != 1 || page[0].ID != l.ID || page[0].For != "" || page[0].Name != "holiday.jpg" {
		t.Fatalf("page %+v, total %d: want the user's holiday.jpg download", page, total)
	}
}
