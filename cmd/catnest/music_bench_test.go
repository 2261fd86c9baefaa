package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/music"
	"github.com/catnest/catnest/shards"
)

var (
	benchScanMB    = flag.Int("music.scanmb", 200, "MB of generated music BenchmarkMusicScan scans (1024 for the 1 GB figure)")
	benchScanFiles = flag.Int("music.scanfiles", 2000, "files BenchmarkMusicScan generates")
	benchScanProf  = flag.String("music.scanprofile", "", "write a CPU profile of BenchmarkMusicScan's scans alone (not of writing the files) to this file")
)

// benchMesh runs a rendezvous and nodes in this process over real WebRTC
// on loopback, each with the music folders of its ServeConfig, until the
// benchmark ends.
func benchMesh(b *testing.B, cfgs ...ServeConfig) []*node {
	b.Helper()
	port := runSignal(b, "--allow-discovery")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	b.Cleanup(func() { cancel(); wg.Wait() })
	var nodes []*node
	for i, cfg := range cfgs {
		cfg.Data = filepath.Join(b.TempDir(), fmt.Sprint(i))
		cfg.HTTP, cfg.SignalURL, cfg.SignalKey, cfg.Name, cfg.LoopbackOnly = "127.0.0.1:0", fmt.Sprintf("http://127.0.0.1:%d/", port), "peerjs", fmt.Sprintf("n%d", i), true
		n, err := newNode(cfg, newLogger(false).With("bench", cfg.Name))
		if err != nil {
			b.Fatal(err)
		}
		nodes = append(nodes, n)
		wg.Go(func() {
			if err := n.run(ctx); err != nil {
				b.Errorf("%s: %v", cfg.Name, err)
			}
		})
	}
	return nodes
}

// benchTracks writes n WAVs of about size bytes into dir: one
// synthesised track whose title is changed for each, so that each has an
// MD5 of its own.
func benchTracks(b *testing.B, dir string, n int, secs float64) []shards.MD5 {
	b.Helper()
	c := chordTrack{Title: "Bench 0000", Artist: "Bench", Album: "Bench", Track: 1, Year: 2025, Root: 0,
		Degrees: []int{1, 5, 6, 4}, Beat: 1, Secs: secs, Rate: 16000}
	wav := c.WAV()
	at := bytes.Index(wav, []byte("Bench 0000"))
	var ids []shards.MD5
	for k := range n {
		copy(wav[at:], fmt.Sprintf("Bench %04d", k))
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%04d.wav", k)), wav, 0o644); err != nil {
			b.Fatal(err)
		}
		ids = append(ids, md5.Sum(wav))
	}
	return ids
}

// firstByte requests a track's stream from a node's web UI (from offset
// on, if not 0) and returns the time until the first byte of the body.
func firstByte(b *testing.B, n *node, id shards.MD5, offset int64) time.Duration {
	b.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+n.ln.Addr().String()+"/api/music/tracks/"+id.String()+"/stream", nil)
	req.Header.Set("X-API-Key", n.apiKey)
	if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var one [1]byte
	if _, err := io.ReadFull(resp.Body, one[:]); err != nil || resp.StatusCode/100 != 2 {
		b.Fatalf("stream of %s: %d, %v", id, resp.StatusCode, err)
	}
	return time.Since(start)
}

// quiet waits until the node has no download under way, so that each
// request is timed as a click from an idle player.
func quiet(b *testing.B, n *node) {
	testutil.WaitFor(b, 2*time.Minute, "the downloads to end", func() bool {
		ts, err := n.files.Shares(b.Context())
		if err != nil {
			b.Fatal(err)
		}
		if slices.ContainsFunc(ts, func(t shards.Transfer) bool { return t.State == shards.StateDownloading }) {
			time.Sleep(20 * time.Millisecond)
			return false
		}
		return true
	})
}

func percentile(d []time.Duration, p float64) float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	i := min(len(s)-1, int(p*float64(len(s))))
	return float64(s[i].Microseconds()) / 1e3
}

// BenchmarkMusicFirstByte times, over real WebRTC nodes on loopback
// (catnest's own node wiring, in this process), a stream request to its
// first byte through the web UI's API: for a track only a neighbour holds,
// played from its start and from 75% (a seek: a Range request), each
// track requested once (nothing of it fetched before), and the same for
// the holder's local files in the same run. 40 tracks of 1 MB (30 s WAVs)
// per case; reported: p50 and p99 in ms.
func BenchmarkMusicFirstByte(b *testing.B) {
	const samples = 40
	dir := b.TempDir()
	ids := benchTracks(b, dir, 2*samples, 30)
	nodes := benchMesh(b, ServeConfig{Music: []string{dir}}, ServeConfig{})
	holder, player := nodes[0], nodes[1]
	testutil.WaitFor(b, 5*time.Minute, "the player to list the holder's tracks", func() bool {
		ts, err := player.music.Tracks(b.Context(), false)
		if err != nil {
			b.Fatal(err)
		}
		return len(ts) == len(ids)
	})
	ts, _ := player.music.Tracks(b.Context(), false)
	size := ts[0].Size
	b.ResetTimer()
	for range b.N {
		var remote, remoteSeek, local, localSeek []time.Duration
		for k := range samples {
			quiet(b, player)
			remote = append(remote, firstByte(b, player, ids[k], 0))
			quiet(b, player)
			remoteSeek = append(remoteSeek, firstByte(b, player, ids[samples+k], size*3/4))
			local = append(local, firstByte(b, holder, ids[k], 0))
			localSeek = append(localSeek, firstByte(b, holder, ids[samples+k], size*3/4))
		}
		for _, c := range []struct {
			name string
			d    []time.Duration
		}{{"neighbour", remote}, {"neighbour-75%", remoteSeek}, {"local", local}, {"local-75%", localSeek}} {
			b.ReportMetric(percentile(c.d, 0.5), "ms-p50-"+c.name)
			b.ReportMetric(percentile(c.d, 0.99), "ms-p99-"+c.name)
		}
		b.StopTimer()
		// The next round's tracks are fetched anew.
		for _, id := range ids {
			if err := player.music.RemoveCache(b.Context(), id); err != nil && !isUnknown(err) {
				b.Fatal(err)
			}
		}
		b.StartTimer()
	}
}

func isUnknown(err error) bool {
	return err != nil && (errors.Is(err, music.ErrUnknown) || errors.Is(err, shards.ErrUnknown))
}

// id3Title is an ID3v2.3 tag with a title and an artist, to put before an
// MP3 or a FLAC.
func id3Title(title, artist string) []byte {
	frame := func(id, text string) []byte {
		f := []byte(id)
		f = binary.BigEndian.AppendUint32(f, uint32(len(text)+1))
		f = append(f, 0, 0, 0) // flags, Latin-1
		return append(f, text...)
	}
	body := slices.Concat(frame("TIT2", title), frame("TPE1", artist))
	n := len(body)
	return slices.Concat([]byte("ID3\x03\x00\x00"), []byte{byte(n >> 21 & 127), byte(n >> 14 & 127), byte(n >> 7 & 127), byte(n & 127)}, body)
}

// BenchmarkMusicScan scans a generated library of -music.scanfiles files
// (2,000) and -music.scanmb MB (200; 1024 for the 1 GB figure) with a
// node's music folder: shards hashes every file, music reads the tags and
// headers of each. Three files in four are WAVs of random sound; the
// others are the embedded MP3s (a VBR one without a Xing header, whose
// frames are walked) and FLAC, each behind an ID3v2 tag of its own.
// Reported: MB/s from the node's start to its scan done and every track
// listed, md5sum's MB/s over the same files in the same run, and the
// ratio; "-alone" the same from the start of the node's services (the
// scan's start) instead, without making the node; cpu-x-md5sum the CPU
// time of this process over the scan (the node's other work included)
// against md5sum's.
func BenchmarkMusicScan(b *testing.B) {
	dir := b.TempDir()
	files, total := *benchScanFiles, int64(*benchScanMB)<<20
	var fixtures [][]byte
	for _, f := range []string{"vbr_noxing_v1.mp3", "cbr_v23.mp3", "tagged.flac"} {
		d, err := demoMusic.ReadFile("demomusic/" + f)
		if err != nil {
			b.Fatal(err)
		}
		fixtures = append(fixtures, d)
	}
	r := rand.New(rand.NewPCG(1, 2))
	var paths []string
	var written int64
	for k := range files {
		var data []byte
		name := fmt.Sprintf("%02d/%05d", k%50, k)
		if k%4 == 3 {
			fx := fixtures[k/4%len(fixtures)]
			data = append(id3Title(fmt.Sprintf("Scan %d", k), "Bench"), fx...)
			name += map[bool]string{true: ".flac", false: ".mp3"}[k/4%len(fixtures) == 2]
		} else {
			// The rest of the budget, spread over the WAVs left.
			left := files - k
			n := max(4096, (total-written)/int64(left)*4/3) &^ 1
			data = make([]byte, n)
			for i := 44; i+8 <= len(data); i += 8 {
				binary.LittleEndian.PutUint64(data[i:], r.Uint64())
			}
			testutil.WAVHeader(data)
			name += ".wav"
		}
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			b.Fatal(err)
		}
		paths = append(paths, p)
		written += int64(len(data))
	}
	mb := float64(written) / (1 << 20)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		cmd := exec.Command("md5sum", paths...)
		cmd.Stdout = io.Discard
		probe := udpProbe(b)
		if err := cmd.Run(); err != nil {
			b.Skipf("md5sum: %v", err)
		}
		md5sum := time.Since(start)
		rttIdle := probe()
		md5sumCPU := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()

		if *benchScanProf != "" {
			f, err := os.Create(*benchScanProf)
			if err != nil {
				b.Fatal(err)
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				b.Fatal(err)
			}
			defer f.Close()
		}
		start = time.Now()
		probe = udpProbe(b)
		nodes := benchMesh(b, ServeConfig{Music: []string{dir}})
		// The scan starts with the node's services, once benchMesh has
		// made the node (identity, database, mesh) and started them.
		scanStart, cpu0 := time.Now(), processCPU()
		// The library is read once the scan says it is idle, as the UI
		// reads it on a library event: reading it every few ms while
		// the scan runs merged it again each time, a cost of the
		// benchmark, not of the scan.
		testutil.WaitFor(b, 30*time.Minute, "the scan", func() bool {
			time.Sleep(5 * time.Millisecond)
			if st, _ := nodes[0].music.Scan(b.Context()); st.State != "idle" {
				return false
			}
			ts, _ := nodes[0].music.Tracks(b.Context(), false)
			return len(ts) == files
		})
		scan, alone, cpu := time.Since(start), time.Since(scanStart), processCPU()-cpu0
		rttScan := probe()
		if *benchScanProf != "" {
			pprof.StopCPUProfile()
		}
		st, _ := nodes[0].music.Scan(b.Context())
		if len(st.Errors) > 0 {
			b.Fatalf("the scan skipped %d files: %+v", len(st.Errors), st.Errors[0])
		}
		b.ReportMetric(mb/scan.Seconds(), "MB/s-scan")
		b.ReportMetric(mb/md5sum.Seconds(), "MB/s-md5sum")
		b.ReportMetric(md5sum.Seconds()/scan.Seconds(), "x-md5sum")
		b.ReportMetric(mb/alone.Seconds(), "MB/s-scan-alone")
		b.ReportMetric(md5sum.Seconds()/alone.Seconds(), "x-md5sum-alone")
		// CPU time against md5sum's: on a machine busy with other work
		// wall times measure the neighbours as much as the scan.
		b.ReportMetric(cpu.Seconds()/md5sumCPU.Seconds(), "cpu-x-md5sum")
		// Cores the scan kept busy on average: 1 means the second core
		// of a 2-core machine sat idle (or went to other processes).
		b.ReportMetric(cpu.Seconds()/alone.Seconds(), "cores")
		// The node's other work while it scans: round trips of a UDP
		// echo in this process, as the mesh's packets go, against the
		// same while md5sum runs (the process idle, a core busy).
		b.ReportMetric(percentile(rttScan, 0.5), "ms-p50-rtt-scan")
		b.ReportMetric(percentile(rttScan, 0.99), "ms-p99-rtt-scan")
		b.ReportMetric(percentile(rttIdle, 0.99), "ms-p99-rtt-md5sum")
		b.ReportMetric(mb, "MB")
	}
}

// udpProbe starts a UDP echo on loopback in this process and a prober
// that sends it a packet every 2 ms, each after the last one's reply;
// the returned func stops both and returns the round trips. They are the
// delays a goroutine woken by the network sees: the echo and the prober
// each wait for a processor when they are woken.
func udpProbe(b *testing.B) (stop func() []time.Duration) {
	b.Helper()
	echo, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	c, err := net.DialUDP("udp", nil, echo.LocalAddr().(*net.UDPAddr))
	if err != nil {
		echo.Close()
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 64)
		for {
			n, from, err := echo.ReadFromUDP(buf)
			if err != nil {
				return
			}
			echo.WriteToUDP(buf[:n], from)
		}
	})
	done := make(chan struct{})
	var rtts []time.Duration
	wg.Go(func() {
		buf := make([]byte, 64)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for seq := uint64(0); ; seq++ {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			binary.BigEndian.PutUint64(buf, seq)
			sent := time.Now()
			if _, err := c.Write(buf[:8]); err != nil {
				return
			}
			c.SetReadDeadline(sent.Add(time.Second))
			for {
				n, err := c.Read(buf)
				if err != nil {
					if errors.Is(err, os.ErrDeadlineExceeded) {
						break // lost: not a round trip
					}
					return
				}
				if n == 8 && binary.BigEndian.Uint64(buf) == seq {
					rtts = append(rtts, time.Since(sent))
					break
				}
			}
		}
	})
	return func() []time.Duration {
		close(done)
		c.Close()
		echo.Close()
		wg.Wait()
		if len(rtts) == 0 {
			return []time.Duration{0}
		}
		return rtts
	}
}
