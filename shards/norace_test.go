//go:build !race

package shards

// raceEnabled: the race detector is on (see race_test.go).
const raceEnabled = false
