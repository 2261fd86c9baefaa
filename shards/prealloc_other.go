//go:build !linux

package shards

import "os"

// preallocate: see prealloc_linux.go; elsewhere the part file is sparse.
func preallocate(f *os.File, size int64) (bool, error) { return false, nil }
