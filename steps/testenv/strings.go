package testenv

// AllStrings returns every string of up to n characters of alphabet, the
// empty one included, for holding a hand-written check to the pattern it
// replaced.
func AllStrings(alphabet string, n int) []string {
	out := []string{""}
	level := []string{""}
	for range n {
		var next []string
		for _, prefix := range level {
			for _, c := range alphabet {
				next = append(next, prefix+string(c))
			}
		}
		out = append(out, next...)
		level = next
	}
	return out
}
