//go:build !race

package agenttest

// RaceEnabled: the tests run with -race, so the binary is built with it.
const RaceEnabled = false
