package chatlog

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// durableEnv names the database file of the child process of
// TestStoreDurableKill.
const durableEnv = "CHATLOG_DURABLE_CHILD_DB"

// TestStoreDurableChild is the child of TestStoreDurableKill: it puts
// messages one by one and prints "ack N ID" after each Put returns, until
// it is killed.
func TestStoreDurableChild(t *testing.T) {
	path := os.Getenv(durableEnv)
	if path == "" {
		t.Skip("runs only as the child of TestStoreDurableKill")
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s, err := OpenStore(db)
	if err != nil {
		t.Fatal(err)
	}
	ident := newIdent(t)
	deadline := time.Now().Add(time.Minute) // in case the parent is gone
	for i := 0; time.Now().Before(deadline); i++ {
		m := msgAt(t, ident, testChannel, KindText, durableBody(i), ID{}, int64(i))
		if _, err := s.Put(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		// os.Stdout is unbuffered: one write per ack.
		fmt.Printf("ack %d %v\n", i, m.ID)
	}
}

func durableBody(i int) string { return fmt.Sprintf("message %d %s", i, strings.Repeat("x", i%300)) }

// TestStoreDurableKill checks that every message whose Put returned is on
// disk and intact after the writing process is killed with SIGKILL.
func TestStoreDurableKill(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "js" || runtime.GOOS == "wasip1" {
		t.Skip("needs SIGKILL and a subprocess")
	}
	if os.Getenv(durableEnv) != "" {
		t.Skip("in the child")
	}
	const killAfter = 300
	path := filepath.Join(t.TempDir(), "catnest.db")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestStoreDurableChild$", "-test.count=1", "-test.v=false")
	cmd.Env = append(os.Environ(), durableEnv+"="+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[int]ID{}
	sc := bufio.NewScanner(out)
	killed := false
	for sc.Scan() {
		var i int
		var hexID string
		if _, err := fmt.Sscanf(sc.Text(), "ack %d %s", &i, &hexID); err != nil {
			continue // test framework output
		}
		id, err := ParseID(hexID)
		if err != nil {
			t.Fatal(err)
		}
		acked[i] = id
		if len(acked) == killAfter && !killed {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
			// Acks already in the pipe count as well: read on to EOF.
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("child ended after %d acks: %v\n%s", len(acked), err, stderr.Bytes())
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child was not killed by SIGKILL: %v", err)
	}
	t.Logf("child killed after %d acks", len(acked))

	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(tx *bbolt.Tx) error {
		for err := range tx.Check() {
			return fmt.Errorf("bbolt check: %w", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := OpenStore(db)
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range acked {
		m, ok, err := s.Get(id)
		if err != nil || !ok {
			t.Fatalf("acked message %d (%v) lost: %v", i, id, err)
		}
		if _, err := Decode(m.Encode()); err != nil {
			t.Fatalf("acked message %d does not verify: %v", i, err)
		}
		if string(m.Body) != durableBody(i) || m.Time != int64(i) {
			t.Fatalf("acked message %d damaged: %q at %d", i, m.Body, m.Time)
		}
	}
	items, err := s.Items(testChannel, 0)
	if err != nil || len(items) < len(acked) {
		t.Fatalf("%d items stored, %d acked (%v)", len(items), len(acked), err)
	}
}
