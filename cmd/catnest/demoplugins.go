package main

import (
	"context"
	"fmt"

	"github.com/catnest/catnest/plugins/examples"
)

// demoPlugins has the demo nodes publish the example plugins, one each
// in turn, so that the market shows them with their publishers.
func demoPlugins(ctx context.Context, nodes []*node) error {
	names, files := examples.Files()
	for i, name := range names {
		n := nodes[i%len(nodes)]
		if _, err := n.plugins.Publish(ctx, files[name]); err != nil {
			return fmt.Errorf("publish %s: %w", name, err)
		}
	}
	return nil
}
