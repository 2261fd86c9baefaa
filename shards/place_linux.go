package shards

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// noFollow makes opening a part file fail on a symlink: in a user's
// folder (Link.Dir) one planted under the part file's name would have the
// node size and write another file.
const noFollow = syscall.O_NOFOLLOW

// renameNoReplace moves old to new unless new exists (fs.ErrExist): a
// file the user (or anything else) put there after finalPath found the
// name free is never replaced. Filesystems without RENAME_NOREPLACE go
// the portable way.
func renameNoReplace(old, new string) error {
	err := unix.Renameat2(unix.AT_FDCWD, old, unix.AT_FDCWD, new, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		return linkRename(old, new)
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: old, New: new, Err: err}
	}
	return nil
}

// lockPart takes the part file's lock without waiting, held until f is
// closed: two nodes on this machine saving one id into one folder
// (Link.Dir) found the same part file, and both wrote it; the one that
// finished first renamed it into place, the other then wrote into that
// finished file (its seeder refused it as changed) and failed. A
// filesystem without locks is used as before.
func lockPart(f *os.File) error {
	err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	switch {
	case errors.Is(err, unix.EWOULDBLOCK):
		return errPartBusy
	case errors.Is(err, unix.ENOLCK), errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOSYS):
		return nil
	}
	return err
}
