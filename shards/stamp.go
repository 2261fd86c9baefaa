package shards

import (
	"os"
	"time"
)

// stamp is what a shared file looked like when it was hashed. Before a
// block is served the file is stat'ed again and compared: any difference
// means the bytes may have changed, and the file is hashed again instead
// of served.
//
// Size and mtime alone miss an edit whose mtime was put back (touch -r,
// a tool that preserves times); where the system has one, the stamp also
// holds the change time (ctime), which no user call can set, and the
// inode, which a file replaced by rename changes.
type stamp struct {
	Size  int64  `json:"size"`
	Mtime int64  `json:"mtime"` // unix ns
	Ctime int64  `json:"ctime,omitempty"`
	Dev   uint64 `json:"dev,omitempty"`
	Ino   uint64 `json:"ino,omitempty"`
}

// stampOf reads a stamp from a FileInfo (of os.Stat or File.Stat).
func stampOf(fi os.FileInfo) stamp {
	s := stamp{Size: fi.Size(), Mtime: fi.ModTime().UnixNano()}
	sysStamp(fi, &s)
	return s
}

// racyWindow is how close to the start of its hashing a file's last change
// may be for the hash to be doubted: an edit made within one tick of the
// file system's clock after the stamp was read leaves the stamp as it was.
// Such a file (git calls it "racily clean") has every piece it serves
// checked against its MD5 first.
const racyWindow = 2 * time.Second

// racy reports whether a file stamped st, hashed from hashStart on, may
// have changed unseen.
func (st stamp) racy(hashStart time.Time) bool {
	if !stampHasCtime {
		return true
	}
	last := max(st.Mtime, st.Ctime)
	return last >= hashStart.Add(-racyWindow).UnixNano()
}
