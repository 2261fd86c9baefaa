//go:build !unix

package shards

import "time"

// processCPU is not measured here.
func processCPU() time.Duration { return 0 }
