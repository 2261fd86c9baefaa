package shards

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/time/rate"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
)

// TestDownloadSourcesSurviveRestart: the bytes each peer sent are
// committed with the bitfield, so a download that resumes after a restart
// still shows who brought what (its "sources" were {} until it ended).
func TestDownloadSourcesSurviveRestart(t *testing.T) {
	testutil.CheckGoroutines(t)
	nw, nodes := newTestNet(t, "holder", "first")
	_, src := testFile(t, 8<<20, 21)
	(&testServer{sources: []pieceSource{src}, limit: rate.NewLimiter(rate.Limit(2<<20), BlockSize)}).register(nodes[0])
	holder := nodes[0].ID()
	holders := func(MD5) []mesh.ID { return []mesh.ID{holder} }
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "db")
	db := openTestDB(t, dbPath)
	first := startDownloads(t, nodes[1], dir, db, holders, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := first.fetch(ctx, src.link(holder, "restart.bin")); err != nil {
		t.Fatal(err)
	}
	var committed int64
	testutil.WaitFor(t, 30*time.Second, "a piece's bit to be committed", func() bool {
		_, haves, _, err := loadDownloads(db)
		if err != nil || haves[src.id].Count() == 0 {
			return false
		}
		for i := range src.man.NumPieces() {
			if haves[src.id].Has(i) {
				committed += src.man.PieceLen(i)
			}
		}
		return true
	})
	first.stop()
	<-first.done
	nw.Kill(nodes[1].ID())
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	second := nw.NewNode(t, "second")
	d := startDownloads(t, second, dir, openTestDB(t, dbPath), holders, nil)
	t.Cleanup(func() { d.db.Close() })
	tr := d.get(src.id).transfer()
	if got := tr.Sources[holder]; got < committed {
		t.Fatalf("after the restart the holder is said to have sent %d bytes (sources %v), want at least the %d committed", got, tr.Sources, committed)
	}
	tr = waitState(t, d.downloads, src.id, StateDone, time.Minute)
	if got := tr.Sources[holder]; got < committed || got > src.man.Size {
		t.Fatalf("done: the holder sent %d bytes, want between %d and %d", got, committed, src.man.Size)
	}
}

// TestStoredSourcesBounded: only the peers that sent the most are kept,
// and a stored value too large or damaged is skipped with an error; the
// download's record loads still.
func TestStoredSourcesBounded(t *testing.T) {
	db := openTestDB(t, filepath.Join(t.TempDir(), "db"))
	many := make(map[mesh.ID]int64)
	for i := range 1000 {
		many[mesh.ID(fmt.Sprintf("peer%04d", i))] = int64(i)
	}
	ok, bad := MD5{1}, MD5{2}
	for _, id := range []MD5{ok, bad} {
		if err := putRecord(db, &downloadRecord{ID: id, Name: "x", State: StatePaused}); err != nil {
			t.Fatal(err)
		}
	}
	if err := putProgress(db, ok, NewBitfield(8), many); err != nil {
		t.Fatal(err)
	}
	huge, _ := json.Marshal(map[string]string{"x": string(make([]byte, maxSourcesSize))})
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketDownloads).Put(sourcesKey(bad), huge) }); err != nil {
		t.Fatal(err)
	}
	recs, _, errs, err := loadDownloads(db)
	if err != nil || len(recs) != 2 || len(errs) != 1 {
		t.Fatalf("loaded %d records, errors %v, %v; want 2 and one error", len(recs), errs, err)
	}
	for _, r := range recs {
		switch r.ID {
		case ok:
			if len(r.Sources) != maxStoredSources || r.Sources["peer0999"] != 999 || r.Sources["peer0936"] != 936 {
				t.Errorf("kept %d sources (%v), want the %d largest", len(r.Sources), r.Sources, maxStoredSources)
			}
		case bad:
			if len(r.Sources) != 0 {
				t.Errorf("sources from a damaged value: %v", r.Sources)
			}
		}
	}
}
