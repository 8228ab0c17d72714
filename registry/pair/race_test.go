//go:build race

package pair

const raceEnabled = true
