//go:build !linux

package shards

import (
	"fmt"
	"os"
)

// stampHasCtime: elsewhere the stamp is size and mtime only, which an
// edit can keep, so every piece served from a user's file is checked
// against its MD5 first (stamp.racy is always true).
const stampHasCtime = false

func sysStamp(fi os.FileInfo, s *stamp) {}

// openShared opens a shared file to read, after checking it is a regular
// file: opening a FIFO would block. (Linux checks through the descriptor.)
func openShared(path string, nofollow bool) (*os.File, error) {
	stat := os.Stat
	if nofollow {
		stat = os.Lstat
	}
	if fi, err := stat(path); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	return os.Open(path)
}
