package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// demoDirs are the folders demo node name shares: its sample files and
// its music library.
func demoDirs(data, name string) (shared, library string) {
	return filepath.Join(data, name, "shared"), filepath.Join(data, name, "library")
}

// writeDemoContent writes each demo node's sample files and music into
// the folders it shares, one node after the other, until ctx ends.
//
// It runs once the nodes have started: drawing the images and
// synthesising the chords takes a good part of a second a node (many
// seconds under the race detector or a busy CPU), which the user should
// not wait for before the web UIs open. The nodes watch their folders
// and list the content as it lands. Each file or album is made in a
// staging folder beside the shared ones and moved in whole, so that no
// node hashes a half-written file; what a previous run with the same
// --data left in place is kept as it is.
func writeDemoContent(ctx context.Context, data string, names []string) error {
	for i, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		shared, library := demoDirs(data, name)
		stage, err := os.MkdirTemp(filepath.Join(data, name), "demo-staging-")
		if err != nil {
			return fmt.Errorf("demo node %s: %w", name, err)
		}
		err = writeDemoNode(ctx, stage, name, i, len(names), shared, library)
		if rmErr := os.RemoveAll(stage); err == nil {
			err = rmErr
		}
		if err != nil {
			return fmt.Errorf("demo node %s: %w", name, err)
		}
	}
	return nil
}

// writeDemoNode makes node i's content under stage and moves it into
// shared and library.
func writeDemoNode(ctx context.Context, stage, name string, i, n int, shared, library string) error {
	if _, err := writeDemoFiles(filepath.Join(stage, "shared"), name); err != nil {
		return err
	}
	if err := moveEntries(filepath.Join(stage, "shared"), shared); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := writeDemoMusic(filepath.Join(stage, "library"), name, i, n); err != nil {
		return err
	}
	return moveEntries(filepath.Join(stage, "library"), library)
}

// moveEntries renames each file and folder in from into to, where none
// of that name is yet.
func moveEntries(from, to string) error {
	entries, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	for _, e := range entries {
		dst := filepath.Join(to, e.Name())
		if _, err := os.Lstat(dst); err == nil {
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := os.Rename(filepath.Join(from, e.Name()), dst); err != nil {
			return err
		}
	}
	return nil
}
