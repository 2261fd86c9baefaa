package mesh

import (
	"math/rand/v2"
	"testing"
)

// TestQueueBudgetAccounting drives a budget with 300,000 random takes,
// gives, registrations and closes over more accounts than it has shares
// (links in their hello and past their end draw on the pool only), and
// checks after each step that the bytes held never exceed the limit,
// that the counts match the accounts, and that a registered link within
// its share (for the services' bytes) or its reserve (for the mesh's
// own) is never refused, whatever the others hold.
func TestQueueBudgetAccounting(t *testing.T) {
	cfg := Config{HighPeers: 6, MaxTemporary: 2, QueueBytes: 8 << 20}
	b := newQueueBudget(&cfg)
	links := cfg.HighPeers + cfg.MaxTemporary
	if b.limit > int64(cfg.QueueBytes) || b.share < MaxBulkFrame || b.pool <= 0 || b.reserve < minMeshReserve {
		t.Fatalf("share %d, reserve %d, pool %d, limit %d for %d links and %d bytes", b.share, b.reserve, b.pool, b.limit, links, cfg.QueueBytes)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	accts := make([]*account, 3*links)
	for i := range accts {
		accts[i] = new(account)
	}
	registered := 0
	for step := range 300_000 {
		a := accts[rng.IntN(len(accts))]
		switch op := rng.IntN(10); {
		case op < 3:
			size := rng.Int64N(MaxBulkFrame + queuedOverhead)
			ok := b.take(a, size)
			// The mesh's bytes beyond its reserve take the share first.
			if !ok && a.own > 0 && a.held+over(a.mesh, a.res)+size <= a.own {
				t.Fatalf("step %d: a registered link within its share (%d of %d held, %d of the mesh's beyond its reserve, %d more) was refused",
					step, a.held, a.own, over(a.mesh, a.res), size)
			}
		case op < 5:
			size := rng.Int64N(MaxCtlFrame + queuedOverhead)
			ok := b.takeMesh(a, size)
			if !ok && a.res > 0 && a.mesh+size <= a.res {
				t.Fatalf("step %d: a registered link within its reserve (%d of %d held, %d more) was refused", step, a.mesh, a.res, size)
			}
		case op < 8:
			if a.held > 0 && (a.mesh == 0 || rng.IntN(2) == 0) {
				b.give(a, rng.Int64N(a.held)+1)
			} else if a.mesh > 0 {
				b.giveMesh(a, rng.Int64N(a.mesh)+1)
			}
		case op < 9:
			switch {
			case a.own > 0:
				b.setOwn(a, false)
				registered--
			case registered < links && !a.closed:
				b.setOwn(a, true)
				registered++
			}
		default:
			if a.own > 0 {
				registered--
			}
			b.close(a)
			if a.held != 0 || a.mesh != 0 || a.own != 0 || a.res != 0 || b.take(a, 1) || b.takeMesh(a, 1) {
				t.Fatalf("step %d: a closed account holds %d and %d, owns %d and %d, or takes more", step, a.held, a.mesh, a.own, a.res)
			}
			// The link is gone; a new one comes in its place.
			for i := range accts {
				if accts[i] == a {
					accts[i] = new(account)
				}
			}
		}
		var held, pooled int64
		own := 0
		for _, a := range accts {
			held += a.held + a.mesh
			pooled += over(a.held+over(a.mesh, a.res), a.own)
			if a.own > 0 {
				own++
			}
		}
		if held != b.used || pooled != b.pooled {
			t.Fatalf("step %d: the budget counts %d held, %d pooled; the accounts %d and %d", step, b.used, b.pooled, held, pooled)
		}
		if b.used > b.limit {
			t.Fatalf("step %d: %d bytes held, limit %d", step, b.used, b.limit)
		}
		if own != registered || own > links {
			t.Fatalf("step %d: %d accounts have a share (%d registered, %d links)", step, own, registered, links)
		}
	}
}

// TestQueueBudgetShareBesideReserve: at the default config, while the
// other links fill the pool and their own shares and reserves with the
// services' and the mesh's bytes, an honest link still holds as many
// service messages of the largest size as half the budget split among
// the links (Config.QueueBytes) has room for: the mesh's reserves come
// out of the pool, not out of the services' shares. Before, they came
// out of both, and a share held 2 such messages (a push source's blocks)
// where it had held 3.
func TestQueueBudgetShareBesideReserve(t *testing.T) {
	cfg := DefaultConfig()
	b := newQueueBudget(&cfg)
	links := cfg.HighPeers + max(cfg.MaxTemporary, 0)
	size := int64(MaxPayload(Bulk) + len("shards/push/3") + queuedOverhead)
	want := int64(cfg.QueueBytes) / int64(2*links) / size
	if want < 2 {
		t.Fatalf("the default config's share holds %d messages of %d bytes; the test needs a few", want, size)
	}
	// The other links and links in their hello flood with both kinds.
	for i := range 3 * links {
		a := new(account)
		b.setOwn(a, i < links-1)
		for b.take(a, size) {
		}
		for b.takeMesh(a, int64(MaxPayload(Ctl))) {
		}
	}
	if used, pooled := b.held(); b.pool-pooled >= size || used > int64(cfg.QueueBytes) {
		t.Fatalf("the flood holds %d bytes, %d of the pool's %d", used, pooled, b.pool)
	}
	honest := new(account)
	b.setOwn(honest, true)
	got := int64(0)
	for b.take(honest, size) {
		got++
	}
	if got != want {
		t.Fatalf("an honest link holds %d service messages of %d bytes while the others flood, want %d (half of %d bytes in %d shares)",
			got, size, want, cfg.QueueBytes, links)
	}
	if !b.takeMesh(honest, minMeshReserve) {
		t.Fatal("the honest link's reserve has no room for the mesh's own traffic")
	}
}
