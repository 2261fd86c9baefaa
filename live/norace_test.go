//go:build !race

package live

// raceEnabled: the race detector is on (see race_test.go).
const raceEnabled = false
