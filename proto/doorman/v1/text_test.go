package doormanv1

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCutText(t *testing.T) {
	if got := CutText("short", 10); got != "short" {
		t.Errorf("CutText kept %q, want it whole", got)
	}
	long := strings.Repeat("é", 2000) // 4,000 bytes, 2-byte runes
	got := CutText(long, MaxText)
	if len(got) > MaxText {
		t.Errorf("CutText: %d bytes, want at most %d", len(got), MaxText)
	}
	if !utf8.ValidString(got) {
		t.Errorf("CutText split a rune: %q", got[len(got)-20:])
	}
	if !strings.HasSuffix(got, "(cut, 4000 bytes)") {
		t.Errorf("CutText does not say what was cut: %q", got[len(got)-30:])
	}
}

func TestCutTexts(t *testing.T) {
	list := make([]string, MaxTexts+7)
	for i := range list {
		list[i] = strings.Repeat("k", 3*MaxText)
	}
	got := CutTexts(list, MaxTexts, MaxText)
	if len(got) != MaxTexts+1 || got[MaxTexts] != "+7 more" {
		t.Fatalf("CutTexts: %d items ending %q, want %d ending \"+7 more\"", len(got), got[len(got)-1], MaxTexts+1)
	}
	for _, s := range got[:MaxTexts] {
		if len(s) > MaxText {
			t.Fatalf("an item of %d bytes, want at most %d", len(s), MaxText)
		}
	}
}
