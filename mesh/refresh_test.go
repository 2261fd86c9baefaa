package mesh_test

import (
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// TestRecordRefreshSpreads: 8 nodes started at the same instant do not
// refresh their records in step 30 periods later; in step, every node
// would check all their signatures at once, every period, for ever. In a
// testing/synctest bubble: the nodes start at exactly the same virtual
// time, and a record's Seq is the virtual time it was issued at.
func TestRecordRefreshSpreads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 8
		nw := meshtest.NewNetwork()
		nodes := make([]*mesh.Node, n)
		for i := range nodes {
			nodes[i] = nw.NewNode(t, fmt.Sprintf("n%02d", i), meshtest.Options{Configure: meshtest.Fast})
		}
		var c mesh.Config
		meshtest.Fast(&c)
		every := c.RecordRefresh
		time.Sleep(30 * every)
		synctest.Wait()
		var issued []int64
		for _, nd := range nodes {
			for _, r := range nd.Directory() {
				if r.ID == nd.ID() {
					issued = append(issued, int64(r.Seq))
				}
			}
		}
		if len(issued) != n {
			t.Fatalf("%d of %d nodes hold their own record", len(issued), n)
		}
		spread := time.Duration(slices.Max(issued) - slices.Min(issued))
		if spread < every/10 {
			t.Fatalf("the nodes' last records were issued within %v of each other, a refresh period being %v: they refresh in step", spread, every)
		}
	})
}
