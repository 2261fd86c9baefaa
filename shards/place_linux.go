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
