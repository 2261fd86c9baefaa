package examples

import (
	"testing"

	"github.com/catnest/catnest/plugins"
)

// TestExamplesParse: every example is a plugin the market takes.
func TestExamplesParse(t *testing.T) {
	names, files := Files()
	if len(names) != 3 {
		t.Fatalf("%d examples: %v", len(names), names)
	}
	for _, n := range names {
		if _, err := plugins.ParseHeader(files[n]); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
}
