package shards

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
)

// TestDownloadByIDWrongManifest: a link with no manifest hash names a
// hostile holder that answers with the manifest and pieces of another file
// of the same size. Its pieces verify against its manifest, so only the
// whole-file MD5 catches it. The download must still end with the right
// file from the honest holder: the lying manifest rejected, its sender
// banned, and the honest holder (whose pieces do not fit the lie) neither
// banned nor scored down.
func TestDownloadByIDWrongManifest(t *testing.T) {
	checkGoroutines(t)
	_, nodes := newTestNet(t, "liar", "honest", "dl")
	data, src := testFile(t, 4<<20, 11)
	otherData, other := testFile(t, len(data), 12)
	lie := &readerSource{id: src.id, man: other.man, r: bytes.NewReader(otherData)}
	(&testServer{sources: []pieceSource{lie}}).register(nodes[0])
	honest := &testServer{sources: []pieceSource{src}, limit: rate.NewLimiter(rate.Limit(4<<20), BlockSize)}
	honest.register(nodes[1])
	holders := nodeIDs(nodes[:2]...)
	dir := t.TempDir()
	d := startDownloads(t, nodes[2], dir, openTestDB(t, filepath.Join(dir, "db")), func(MD5) []mesh.ID { return holders }, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Typed by hand: the liar's node, the id, no manifest hash.
	if _, err := d.fetch(ctx, Link{Node: nodes[0].ID(), ID: src.id, Name: "wanted.bin", Size: int64(len(data))}); err != nil {
		t.Fatal(err)
	}
	tr := waitState(t, d.downloads, src.id, StateDone, time.Minute)
	if got := fileMD5(t, tr.Path); got != src.id {
		t.Fatalf("finished file md5 %s, want %s", got, src.id)
	}
	if tr.Manifest != src.man.Hash() {
		t.Fatalf("transfer's manifest %s, want the honest one", tr.Manifest)
	}
	dl := d.get(src.id)
	dl.mu.Lock()
	liarBanned, honestBanned, honestBad := dl.banned[nodes[0].ID()], dl.banned[nodes[1].ID()], dl.bad[nodes[1].ID()]
	dl.mu.Unlock()
	if !liarBanned || honestBanned || honestBad != 0 {
		t.Fatalf("liar banned %v; honest banned %v with %d bad pieces", liarBanned, honestBanned, honestBad)
	}
	for _, p := range nodes[2].Peers() {
		if p.ID == nodes[1].ID() && p.Failures != 0 {
			t.Errorf("the honest holder's link counts %d offences", p.Failures)
		}
	}
}

// TestDownloadPartFileLost: the stored bitfield names pieces, but the part
// file is gone (a crash between finish's rename and its record, or a user
// who cleaned the data dir). A restart must not count the holes of a new
// part file as verified pieces: a reader gets the resource's bytes, not
// zeros, and the download ends with the right file.
func TestDownloadPartFileLost(t *testing.T) {
	checkGoroutines(t)
	nw, nodes := newTestNet(t, "holder", "first")
	data, src := testFile(t, 8<<20, 13)
	(&testServer{sources: []pieceSource{src}, limit: rate.NewLimiter(rate.Limit(2<<20), BlockSize)}).register(nodes[0])
	holders := []mesh.ID{nodes[0].ID()}
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "db")
	db := openTestDB(t, dbPath)
	first := startDownloads(t, nodes[1], dir, db, func(MD5) []mesh.ID { return holders }, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := first.fetch(ctx, src.link(nodes[0].ID(), "lost.bin")); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "piece 0's bit to be committed", func() bool {
		_, haves, _, err := loadDownloads(db)
		return err == nil && haves[src.id].Has(0)
	})
	first.stop()
	<-first.done
	nw.Kill(nodes[1].ID())
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(partPath(dir, src.id)); err != nil {
		t.Fatal(err)
	}

	second := nw.NewNode(t, "second")
	d := startDownloads(t, second, dir, openTestDB(t, dbPath), func(MD5) []mesh.ID { return holders }, nil)
	t.Cleanup(func() { d.db.Close() })
	c, err := d.open(ctx, src.id)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, src.man.PieceSize)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, data[:len(buf)]) {
		t.Fatal("piece 0 read as verified from a part file that lost it")
	}
	tr := waitState(t, d.downloads, src.id, StateDone, time.Minute)
	if got := fileMD5(t, tr.Path); got != src.id {
		t.Fatalf("finished file md5 %s, want %s", got, src.id)
	}
}
