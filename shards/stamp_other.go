//go:build !linux

package shards

import "os"

// stampHasCtime: elsewhere the stamp is size and mtime only, which an
// edit can keep, so every piece served from a user's file is checked
// against its MD5 first (stamp.racy is always true).
const stampHasCtime = false

func sysStamp(fi os.FileInfo, s *stamp) {}
