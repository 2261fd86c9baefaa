package shards

import (
	"fmt"
	"os"
	"syscall"
)

// stampHasCtime: Linux reports the change time and the inode.
const stampHasCtime = true

func sysStamp(fi os.FileInfo, s *stamp) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.Ctime = st.Ctim.Nano()
		s.Dev = uint64(st.Dev)
		s.Ino = st.Ino
	}
}

// openShared opens a shared file to read. O_NONBLOCK: a FIFO (or a device)
// put where a file was must not hang the open, and so a handler or Share,
// forever; it is refused by its mode instead. nofollow refuses a symlink
// put in a shared folder between the Lstat and the open.
func openShared(path string, nofollow bool) (*os.File, error) {
	flags := os.O_RDONLY | syscall.O_NONBLOCK
	if nofollow {
		flags |= syscall.O_NOFOLLOW
	}
	f, err := os.OpenFile(path, flags, 0)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	return f, nil
}
