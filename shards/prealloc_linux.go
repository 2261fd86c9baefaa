package shards

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// preallocate gives a new part file its size with its blocks allocated
// (fallocate): the pieces written into it then go to blocks the file
// system has, which costs less CPU a byte than writing into a hole (ext4
// allocates a hole's blocks, and accounts for them, page by page as they
// are written), keeps the file in one piece on disk, and a download
// larger than the free space fails at once instead of near its end. The
// blocks read as zeros until written, as a hole does. ok is false where
// the file system cannot (the caller then makes the file sparse).
func preallocate(f *os.File, size int64) (ok bool, err error) {
	if size == 0 {
		return false, nil
	}
	err = unix.Fallocate(int(f.Fd()), 0, 0, size)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) {
		return false, nil
	}
	return err == nil, err
}
