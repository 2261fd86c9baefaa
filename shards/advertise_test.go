package shards

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh/meshtest"
)

// advertCapture is a Node that keeps the last catalog summary the
// service put in the node's record.
type advertCapture struct {
	Node
	mu   sync.Mutex
	last summary
}

func (c *advertCapture) SetResource(service string, sm any) error {
	if s, ok := sm.(summary); ok && service == resourceName {
		c.mu.Lock()
		c.last = s
		c.mu.Unlock()
	}
	return c.Node.SetResource(service, sm)
}

func (c *advertCapture) advertised() summary {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// TestSharesListedOnlyOnceAdvertised: while a folder of 1,500 files is
// hashed, every share Shares lists is already in the catalog the node
// advertises. Music lists a track as soon as Shares does and tells the
// other nodes at once; a node that then streams it looks for holders in
// the advertised catalogs, and found none while shards advertised its
// catalog only at the end of a burst or a checkpoint (music
// TestCacheForgetsDownloadsRemovedInFiles failed so under load).
func TestSharesListedOnlyOnceAdvertised(t *testing.T) {
	testutil.CheckGoroutines(t)
	nw := meshtest.NewNetwork()
	node := nw.NewNode(t, "a", meshtest.Options{Configure: meshtest.Fast})
	dir := t.TempDir()
	const files = 1500
	for i := range files {
		writeRandom(t, filepath.Join(dir, fmt.Sprintf("d%02d", i%30), fmt.Sprintf("f%04d.bin", i)), 1000+i, uint64(1000+i))
	}
	capture := &advertCapture{Node: node}
	cfg := testConfig(t, capture)
	cfg.Folders = []string{dir}
	s := serveTest(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	checks, ahead := 0, 0
	testutil.WaitFor(t, 90*time.Second, "the folder to be shared", func() bool {
		list, err := s.Shares(ctx)
		if err != nil {
			t.Fatal(err)
		}
		adv := capture.advertised()
		seeding := 0
		for _, tr := range list {
			if tr.State == StateSeeding {
				seeding++
			}
		}
		checks++
		if seeding > adv.Count {
			ahead++
			if ahead == 1 {
				t.Errorf("Shares lists %d shares; the advertised catalog (version %d) holds %d", seeding, adv.Version, adv.Count)
			}
		}
		return seeding == files
	})
	if ahead > 0 {
		t.Errorf("Shares was ahead of the advertised catalog in %d of %d looks", ahead, checks)
	}
	if adv := capture.advertised(); adv.Count != files {
		t.Errorf("advertised %d entries, want %d", adv.Count, files)
	}
}
