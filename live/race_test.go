//go:build race

package live

// raceEnabled: the race detector is on. sync.Pool then drops items at
// random, so allocation counts say nothing about the code.
const raceEnabled = true
