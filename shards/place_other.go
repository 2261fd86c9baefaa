//go:build !linux

package shards

import "os"

// noFollow: see place_linux.go; elsewhere createPart checks after opening.
const noFollow = 0

// renameNoReplace: see place_linux.go.
func renameNoReplace(old, new string) error { return linkRename(old, new) }

// lockPart: see place_linux.go; elsewhere part files are not locked.
func lockPart(*os.File) error { return nil }
