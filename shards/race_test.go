//go:build race

package shards

// raceEnabled: the race detector is on.
const raceEnabled = true
