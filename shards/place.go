package shards

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// linkRename moves old to new without replacing an existing new: a hard
// link fails on one (fs.ErrExist). Where links are not supported it falls
// back to a rename after a check, which a file made in between can still
// lose to.
func linkRename(old, new string) error {
	err := os.Link(old, new)
	if errors.Is(err, fs.ErrExist) {
		return err
	}
	if err != nil {
		if _, lerr := os.Lstat(new); lerr == nil {
			return &os.LinkError{Op: "rename", Old: old, New: new, Err: fs.ErrExist}
		}
		return os.Rename(old, new)
	}
	if err := os.Remove(old); err != nil {
		return fmt.Errorf("remove %s after linking it to %s: %w", old, new, err)
	}
	return nil
}

// newFileMode is the mode a file that a program creates in dir gets
// (0666 less the umask, or what a default ACL there gives), found by
// creating one: a finished download in the user's folder is a file they
// saved, as a browser's would be. It was 0644 whatever the umask (a user
// with 077 had their downloads readable by all). 0644 if dir takes no
// probe.
func newFileMode(dir string) os.FileMode {
	p := filepath.Join(dir, ".catnest-probe-"+rand.Text()[:12])
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL|noFollow, 0o666)
	if err != nil {
		return 0o644
	}
	fi, err := f.Stat()
	f.Close()
	os.Remove(p)
	if err != nil {
		return 0o644
	}
	return fi.Mode().Perm()
}
