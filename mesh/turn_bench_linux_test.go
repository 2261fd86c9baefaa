//go:build linux

package mesh_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/signal"
)

const relayProcessEnv = "CATNEST_TURN_RELAY_PROCESS"

// TestTURNRelayProcess is the relay process of BenchmarkTURNGoodput, which
// runs this test binary with relayProcessEnv set, so that it can read the
// relay's CPU apart from the nodes'. It relays on loopback until its
// stdin closes.
func TestTURNRelayProcess(t *testing.T) {
	if os.Getenv(relayProcessEnv) != "1" {
		t.Skip("the relay process of BenchmarkTURNGoodput")
	}
	ts, err := signal.NewTURNServer(signal.TURNServerConfig{
		PublicIP: netip.MustParseAddr("127.0.0.1"), RelayHost: "127.0.0.1", Secret: testTURNSecret, AllowPrivate: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	pc, ln, err := signal.ListenTURN("127.0.0.1", 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		bufio.NewReader(os.Stdin).ReadString('\n') // EOF when the benchmark ends
		cancel()
	}()
	fmt.Printf("relay %s\n", pc.LocalAddr())
	if err := ts.Serve(ctx, pc, ln); err != nil {
		t.Fatal(err)
	}
}

// relayProcess runs the relay in a child process until the benchmark ends
// and returns its address and a function that reads its CPU time.
func relayProcess(b *testing.B) (string, func() time.Duration) {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestTURNRelayProcess$", "-test.v")
	cmd.Env = append(os.Environ(), relayProcessEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	sc := bufio.NewScanner(stdout)
	addr := ""
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "relay "); ok {
			addr = a
			break
		}
	}
	if addr == "" {
		b.Fatal("the relay process did not start")
	}
	go func() {
		for sc.Scan() {
		}
	}()
	pid := cmd.Process.Pid
	return addr, func() time.Duration {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0
		}
		// Fields after the command name, which ends with ')': utime and
		// stime are the 12th and 13th, in clock ticks (100 a second).
		f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		return time.Duration(ut+st) * 10 * time.Millisecond
	}
}

// BenchmarkTURNGoodput sends 64 MiB (-goodput.mib) one way over the bulk
// channel of two links between real nodes on loopback in the same rounds,
// taking turns: one direct, one whose ends may use only relayed
// candidates, through the embedded TURN relay running in a process of its
// own. It reports the medians of each link's MB/s, their ratio
// (relayed/direct), and the relay process's CPU-milliseconds per MB
// relayed.
//
//	go test -run '^$' -bench TURNGoodput ./mesh/ -args -goodput.rounds=5
func BenchmarkTURNGoodput(b *testing.B) {
	addr, relayCPU := relayProcess(b)
	cfg := signal.DefaultServerConfig()
	cfg.Path = "/myapp"
	cfg.TURN = signal.TURNConfig{URLs: []string{"turn:" + addr + "?transport=udp"}, Secret: testTURNSecret}
	srv := signal.NewServer(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	b.Cleanup(func() { cancel(); <-done })
	url := "http://" + ln.Addr().String() + "/myapp"

	def := mesh.RTCConfig{LoopbackOnly: true, SCTPReceiveBuffer: 4 << 20, SendBufferHigh: 4 << 20, SendBufferLow: 1 << 20}
	relayed := def
	relayed.RelayOnly = true
	direct, turned := newMeshPair(b, url, def), newMeshPair(b, url, relayed)
	for _, p := range []*meshPair{direct, turned} {
		if p.a.Peers()[0].Route != map[*meshPair]mesh.Route{direct: mesh.RouteDirect, turned: mesh.RouteTURN}[p] {
			b.Fatalf("link %+v: not the route wanted", p.a.Peers()[0])
		}
	}
	const msg = 64 << 10
	total := *goodputMiB << 20
	for _, p := range []*meshPair{direct, turned} {
		if _, _, err := transfer(p, 2<<20, msg, true); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	var dRate, tRate, ratio, relayMs, dCPU, tCPU []float64
	for i := range b.N * *goodputRounds {
		order := []*meshPair{direct, turned}
		if i%2 == 1 {
			order = []*meshPair{turned, direct}
		}
		var rate [2]float64
		for _, p := range order {
			r0 := relayCPU()
			mbps, cpu, err := transfer(p, total, msg, true)
			if err != nil {
				b.Fatal(err)
			}
			if p == direct {
				rate[0] = mbps
				dRate, dCPU = append(dRate, mbps), append(dCPU, cpu)
			} else {
				rate[1] = mbps
				tRate, tCPU = append(tRate, mbps), append(tCPU, cpu)
				relayMs = append(relayMs, float64((relayCPU()-r0).Milliseconds())/(float64(total)/1e6))
			}
		}
		ratio = append(ratio, rate[1]/rate[0])
		b.Logf("round %d: direct %.1f MB/s (nodes %.2f CPU-s), through TURN %.1f MB/s (nodes %.2f CPU-s, relay %.2f CPU-ms/MB), ratio %.3f",
			i, rate[0], dCPU[len(dCPU)-1], rate[1], tCPU[len(tCPU)-1], relayMs[len(relayMs)-1], rate[1]/rate[0])
	}
	b.StopTimer()
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(median(dRate), "direct-MB/s")
	b.ReportMetric(median(tRate), "turn-MB/s")
	b.ReportMetric(median(ratio), "ratio")
	b.ReportMetric(median(relayMs), "relay-CPU-ms/MB")
	b.ReportMetric(median(dCPU), "direct-nodes-CPU-s")
	b.ReportMetric(median(tCPU), "turn-nodes-CPU-s")
	b.Logf("direct MB/s %.1f..%.1f, TURN MB/s %.1f..%.1f, relay CPU-ms/MB %.2f..%.2f",
		slices.Min(dRate), slices.Max(dRate), slices.Min(tRate), slices.Max(tRate), slices.Min(relayMs), slices.Max(relayMs))
}
