package shards

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback starts writing f's dirty pages to disk and returns
// without waiting for them (sync_file_range, SYNC_FILE_RANGE_WRITE): the
// part file's pieces go to disk while the download runs, so the sync that
// must come before the download is reported done (finish) waits for the
// last few MiB, not for every byte written since the last commit of the
// bitfield (up to persistInterval of them: a 64 MiB download on loopback,
// all of it). It is no sync: nothing is promised durable by it. File
// systems and kernels that cannot are left to the sync.
func startWriteback(f *os.File) error {
	err := unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ESPIPE) {
		return nil
	}
	return err
}
