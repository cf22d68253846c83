package doormanv1

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Bounds of the texts either side stores, logs or reports about refusals:
// a NACK's error, the reasons entries were not programmed. An agent's
// errors can carry kernel messages and entry keys, so neither side keeps
// or forwards them whole.
const (
	// MaxText is the most bytes of one error text kept.
	MaxText = 1024
	// MaxNackText is the most bytes of a NACK's error, which may name
	// several entries.
	MaxNackText = 4 * MaxText
	// MaxTexts is the most items of a list of texts kept (not-programmed
	// entries).
	MaxTexts = 100
)

// CutText returns s cut to about limit bytes (on a rune boundary), marked
// with its full length.
func CutText(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	mark := "… (cut, " + strconv.Itoa(len(s)) + " bytes)"
	keep := limit - len(mark)
	for keep > 0 && !utf8.RuneStart(s[keep]) {
		keep--
	}
	return s[:max(keep, 0)] + mark
}

// CutTexts returns the first n items of list, each cut to limit bytes, and
// then "+K more" when K items were left out.
func CutTexts(list []string, n, limit int) []string {
	if len(list) == 0 {
		return list
	}
	out := make([]string, 0, min(len(list), n)+1)
	for _, s := range list[:min(len(list), n)] {
		out = append(out, CutText(s, limit))
	}
	if more := len(list) - n; more > 0 {
		out = append(out, fmt.Sprintf("+%d more", more))
	}
	return out
}
