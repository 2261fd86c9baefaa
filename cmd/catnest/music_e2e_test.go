package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestServeMusicFlags: --music takes readable folders, refuses one that
// holds the data dir or is given twice, and shards shares each file once
// whether a music folder lies in a --share folder or holds one; the music
// service names its folders as shards names their files.
func TestServeMusicFlags(t *testing.T) {
	base := []string{"--signal", "http://127.0.0.1:9000/x"}
	dir := t.TempDir()
	musicDir := filepath.Join(dir, "Music")
	other := filepath.Join(dir, "Other")
	for _, d := range []string{musicDir, other, filepath.Join(musicDir, "Live")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := parseServe(append(base, "--data", filepath.Join(dir, "data"), "--music", musicDir, "--music", other), io.Discard)
	if err != nil || !slices.Equal(cfg.Music, []string{musicDir, other}) {
		t.Fatalf("--music twice: %+v, %v", cfg.Music, err)
	}
	file := filepath.Join(dir, "song.mp3")
	os.WriteFile(file, []byte("x"), 0o644)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--music", filepath.Join(dir, "missing")}, "no such file"},
		{[]string{"--music", file}, "not a directory"},
		{[]string{"--music", dir, "--data", filepath.Join(dir, "data")}, "data dir"},
		{[]string{"--music", musicDir, "--music", filepath.Join(musicDir, "Live")}, "overlap"},
	} {
		if _, err := parseServe(append(base, tt.args...), io.Discard); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want an error with %q", tt.args, err, tt.want)
		}
	}
	// A music folder reached through a symlink inside a shared folder.
	link := filepath.Join(other, "music-link")
	if err := os.Symlink(musicDir, link); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name                   string
		shares, music          []string
		wantFolders, wantMusic []string
	}{
		{"apart", []string{other}, []string{musicDir}, []string{other, musicDir}, []string{musicDir}},
		{"music in a share", []string{dir}, []string{musicDir}, []string{dir}, []string{musicDir}},
		{"share in music", []string{filepath.Join(musicDir, "Live")}, []string{musicDir}, []string{musicDir}, []string{musicDir}},
		{"the same", []string{musicDir}, []string{musicDir}, []string{musicDir}, []string{musicDir}},
		{"through a symlink", []string{musicDir}, []string{link}, []string{musicDir}, []string{musicDir}},
	} {
		folders, music := sharedFolders(tt.shares, tt.music)
		if !slices.Equal(folders, tt.wantFolders) || !slices.Equal(music, tt.wantMusic) {
			t.Errorf("%s: shards %q, music %q; want %q and %q", tt.name, folders, music, tt.wantFolders, tt.wantMusic)
		}
	}
	var out, errOut bytes.Buffer
	run(context.Background(), []string{"serve", "--help"}, &out, &errOut)
	for _, want := range []string{"-music DIR", "Music view"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("serve --help lacks %q:\n%s", want, errOut.String())
		}
	}
}
