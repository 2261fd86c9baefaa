package shards

import (
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
