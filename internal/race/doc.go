// Package race tells tests whether the race detector is built in: it
// multiplies a process's memory several times over (shadow memory for
// every allocation), so memory budgets are scaled by MemoryFactor under it.
package race

// MemoryFactor is how much more memory a budget allows under the race
// detector: its shadow memory costs 5–10× what the program itself uses.
func MemoryFactor() int64 {
	if Enabled {
		return 10
	}
	return 1
}
