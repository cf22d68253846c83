package render

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// allRules is every rule the golden views render under every Options the
// table tests use, with localhost NodePorts, and the longest affinity rule
// there can be.
func allRules() []Rule {
	opts := []Options{{LocalhostNodePorts: true}}
	for _, o := range localModeOptions {
		opts = append(opts, o)
	}
	var rules []Rule
	for _, o := range opts {
		for _, c := range o.View(kindsView()).Chains {
			rules = append(rules, c.Rules...)
		}
	}
	for _, kind := range []ChainKind{KindAffinity, KindAffinityPick} {
		spec := ChainSpec{Kind: kind, Affinity: AffinityTimeoutMax - 1, Endpoint: AffinityEndpoint{
			Proto: unix.IPPROTO_SCTP, Addr: netip.MustParseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"), Port: 65535,
		}}
		rules = append(rules, spec.Chain().Rules...)
	}
	return rules
}

// TestRuleKeyFollowsExprs: changing any one expression of any rule, or
// one field of one, changes its key and so its comment, though its Text
// stays the same.
func TestRuleKeyFollowsExprs(t *testing.T) {
	for _, r := range allRules() {
		for i := range r.Exprs {
			changed := Rule{Text: r.Text, Exprs: append([]expr.Any(nil), r.Exprs...)}
			changed.Exprs[i] = &expr.Counter{}
			if changed.Key() == r.Key() || changed.Comment() == r.Comment() {
				t.Errorf("%q: expression %d replaced, same key %s", r.Text, i, r.Key())
			}
		}
	}
	mark := setMasqMarkRule()
	other := setMasqMarkRule()
	other.Exprs[1] = &expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: native32(^uint32(0x8000)), Xor: native32(0x8000)}
	if mark.Text != other.Text || mark.Key() == other.Key() || mark.Comment() == other.Comment() {
		t.Errorf("mark 0x8000 under the text of 0x4000: keys %s and %s, comments %q and %q", mark.Key(), other.Key(), mark.Comment(), other.Comment())
	}
	if mark.Key() != setMasqMarkRule().Key() {
		t.Error("the same expressions give different keys")
	}
}

// TestCommentFitsKernel: every comment, the longest affinity rule's too,
// fits the kernel's user data, ends with the key and gives back the text
// (or as much of it as fits).
func TestCommentFitsKernel(t *testing.T) {
	longest := 0
	for _, r := range allRules() {
		c := r.Comment()
		longest = max(longest, len(r.Text))
		if len(c) > MaxComment {
			t.Errorf("%q: comment of %d bytes, more than %d", r.Text, len(c), MaxComment)
		}
		if !strings.HasSuffix(c, " #"+r.Key()) || len(r.Key()) != 8 {
			t.Errorf("comment %q does not end with the key %s", c, r.Key())
		}
		text := CommentText(c)
		cut := strings.HasSuffix(text, "...") && strings.HasPrefix(r.Text, strings.TrimSuffix(text, "..."))
		if text != r.Text && !cut {
			t.Errorf("CommentText(%q) = %q, not the text %q or a cut of it", c, text, r.Text)
		}
	}
	if longest <= MaxComment {
		t.Errorf("no rule's text is longer than a comment (longest %d): the cut is untested", longest)
	}
}
