package shards

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
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
