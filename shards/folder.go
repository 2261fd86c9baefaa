package shards

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// ScanStatus is how far the shared folders' scan has got.
type ScanStatus struct {
	Folders []string `json:"folders"`
	// Scanning is true until every folder has been walked once and every
	// file found hashed (or found unchanged).
	Scanning bool `json:"scanning"`
	// Found is the files the walks found; Pending those still to look at.
	Found   int `json:"found"`
	Pending int `json:"pending"`
	// Hashing is the file being hashed now, if any.
	Hashing string `json:"hashing,omitempty"`
}

// Scan reports the progress of the shared folders' scan.
func (s *Service) Scan() ScanStatus {
	st := ScanStatus{Folders: slices.Clone(s.cfg.Folders)}
	s.scanMu.Lock()
	st.Found = s.scanFound
	st.Scanning = s.scanning
	s.scanMu.Unlock()
	st.Pending = s.shares.pending()
	st.Hashing = s.shares.hashingNow()
	if st.Pending > 0 || st.Hashing != "" {
		st.Scanning = true
	}
	return st
}

// folders watches the shared folders: every regular file under each is
// shared in place, and fsnotify reports what changes. Changed paths go
// to the shares' queue, which hashes them once they have been quiet for
// Config.WatchDelay.
type folders struct {
	svc   *Service
	roots []string
}

func newFolders(svc *Service, dirs []string) (*folders, error) {
	f := &folders{svc: svc}
	for _, d := range dirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			return nil, fmt.Errorf("shards: shared folder %s: %w", d, err)
		}
		fi, err := os.Stat(abs)
		if err != nil {
			return nil, fmt.Errorf("shards: shared folder: %w", err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("shards: shared folder %s is not a folder", d)
		}
		f.roots = append(f.roots, abs)
	}
	return f, nil
}

// serve walks the folders once and then follows their changes until ctx
// ends.
func (f *folders) serve(ctx context.Context) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		f.svc.log.Error("cannot watch the shared folders; they are scanned once", "err", err)
	}
	if w != nil {
		defer w.Close()
	}
	f.dropUnlisted()
	// Scanning from now, before the reporter first looks: else it could
	// find the scan over before it began.
	f.svc.scanMu.Lock()
	f.svc.scanning = true
	f.svc.scanMu.Unlock()
	var wg sync.WaitGroup
	defer wg.Wait()
	rctx, stopReport := context.WithCancel(ctx)
	defer stopReport()
	wg.Go(func() { f.report(rctx, time.Now(), f.svc.cfg.ScanLogInterval) })
	f.scanAll(w)
	if w == nil {
		<-ctx.Done()
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			f.event(w, ev)
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				// Events were lost: look at everything again.
				f.svc.log.Warn("shared folders: too many changes at once; rescanning")
				f.scanAll(w)
				continue
			}
			f.svc.log.Warn("shared folders: watch", "err", err)
		}
	}
}

// report logs the first scan of the shared folders: how far it has got
// every interval while it runs, and what it shared once it is done (a
// folder of 20,000 files takes minutes to hash, and said nothing).
func (f *folders) report(ctx context.Context, start time.Time, interval time.Duration) {
	// The end is looked for often, so that "took" is the scan's time,
	// not the interval's.
	t := time.NewTicker(min(interval, 100*time.Millisecond))
	defer t.Stop()
	logged := start
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st := f.svc.Scan()
		if !st.Scanning {
			files, bytes := f.svc.shares.folderTotals()
			f.svc.log.Info("shared folders scanned", "folders", len(f.roots), "files", files, "bytes", bytes,
				"size", formatSize(bytes), "took", time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(logged) < interval {
			continue
		}
		logged = time.Now()
		files, bytes := f.svc.shares.folderTotals()
		f.svc.log.Info("scanning shared folders", "found", st.Found, "to_look_at", st.Pending, "shared", files,
			"bytes", bytes, "size", formatSize(bytes), "hashing", st.Hashing)
	}
}

// formatSize is a size in binary units, for logs: "1.5 GiB".
func formatSize(n int64) string {
	const units = "KMGTPE"
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/1024, 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, units[i])
}

// root is the shared folder path lies under, or "".
func (f *folders) root(path string) string {
	for _, r := range f.roots {
		if path == r || strings.HasPrefix(path, r+string(filepath.Separator)) {
			return r
		}
	}
	return ""
}

// dropUnlisted takes out the files of folders no longer shared.
func (f *folders) dropUnlisted() {
	sh := f.svc.shares
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for path, id := range sh.byPath {
		for _, file := range sh.byID[id].files {
			if file.Path == path && file.Folder != "" && !slices.Contains(f.roots, file.Folder) {
				sh.detachLocked(path)
			}
		}
	}
}

// scanAll walks every folder: each file found is queued (an unchanged one
// costs a stat), each file shared before and not found is queued to go.
func (f *folders) scanAll(w *fsnotify.Watcher) {
	f.svc.scanMu.Lock()
	f.svc.scanning = true
	f.svc.scanFound = 0
	f.svc.scanMu.Unlock()
	for _, r := range f.roots {
		f.scan(w, r, r)
	}
	f.svc.scanMu.Lock()
	f.svc.scanning = false
	f.svc.scanMu.Unlock()
}

// scan walks dir under root, watching each folder and queueing each file.
func (f *folders) scan(w *fsnotify.Watcher, root, dir string) {
	seen := make(map[string]bool)
	found := 0
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			f.svc.log.Debug("shared folder: walk", "path", path, "err", err)
			return nil
		}
		if d.IsDir() {
			if w != nil {
				if err := w.Add(path); err != nil {
					f.svc.log.Warn("shared folder: cannot watch", "path", path, "err", err)
				}
			}
			return nil
		}
		if d.Type().IsRegular() && !ownTemp(d.Name()) {
			seen[path] = true
			found++
			f.svc.shares.queuePath(path, root, 0)
		}
		return nil
	})
	f.svc.scanMu.Lock()
	f.svc.scanFound += found
	f.svc.scanMu.Unlock()
	for _, p := range f.sharedUnder(dir) {
		if !seen[p] {
			f.svc.shares.queuePath(p, root, 0)
		}
	}
}

// ownTemp reports whether name is one of the node's own files in a user's
// folder (Link.Dir): a download's part file, or checkDir's probe. A
// download into a shared folder had its part file (GiBs, holes and all)
// hashed whenever it was quiet for WatchDelay, and shared as a resource.
func ownTemp(name string) bool {
	if strings.HasPrefix(name, ".catnest-probe-") {
		return true
	}
	id, ok := strings.CutPrefix(name, ".catnest-")
	if !ok {
		return false
	}
	id, ok = strings.CutSuffix(id, ".part")
	if !ok {
		return false
	}
	// dirPartName, or ownPartName's "<md5>-<8 base32 letters>".
	if len(id) == 2*len(MD5{})+9 && id[2*len(MD5{})] == '-' {
		suffix := id[2*len(MD5{})+1:]
		if strings.Trim(suffix, "abcdefghijklmnopqrstuvwxyz234567") != "" {
			return false
		}
		id = id[:2*len(MD5{})]
	}
	_, err := ParseMD5(id)
	return err == nil
}

// sharedUnder lists the shared paths under dir.
func (f *folders) sharedUnder(dir string) []string {
	sh := f.svc.shares
	sh.mu.Lock()
	defer sh.mu.Unlock()
	var out []string
	prefix := dir + string(filepath.Separator)
	for p := range sh.byPath {
		if p == dir || strings.HasPrefix(p, prefix) {
			out = append(out, p)
		}
	}
	return out
}

// event queues what a change touches: the path itself, and for a folder
// created, moved in, removed or moved out, everything under it.
func (f *folders) event(w *fsnotify.Watcher, ev fsnotify.Event) {
	path := filepath.Clean(ev.Name)
	root := f.root(path)
	if root == "" || ownTemp(filepath.Base(path)) {
		return
	}
	delay := f.svc.cfg.WatchDelay
	if ev.Has(fsnotify.Create) {
		if fi, err := os.Lstat(path); err == nil && fi.IsDir() {
			f.scan(w, root, path)
			return
		}
	}
	if (ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename)) && !f.svc.shares.isShared(path) {
		// A folder (a shared file has nothing under it): the files under
		// it went with it. Looking under a file too would make removing
		// n shared files cost n² (rm -rf of a big folder).
		for _, p := range f.sharedUnder(path) {
			f.svc.shares.queuePath(p, root, delay)
		}
	}
	f.svc.shares.queuePath(path, root, delay)
}

// scanState is the Service's record of the folder scan.
type scanState struct {
	scanMu    sync.Mutex
	scanning  bool
	scanFound int
}
