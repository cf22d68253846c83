package repocheck

import (
	"bufio"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// inlineLink matches [text](target) and ![alt](target); a title after the
// target ("…" in the parentheses) is cut off.
var inlineLink = regexp.MustCompile(`!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)

// repoRoot is the top of the work tree this test runs in.
func repoRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatalf("git rev-parse --show-toplevel: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// markdownFiles are the tracked .md files.
func markdownFiles(t *testing.T, root string) []string {
	t.Helper()
	cmd := exec.Command("git", "ls-files", "*.md")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	files := strings.Fields(string(out))
	if len(files) == 0 {
		t.Fatal("no markdown files tracked")
	}
	return files
}

// link is one link target and where it was written.
type link struct {
	target string
	line   int
}

// page is what a markdown file offers and asks for.
type page struct {
	links   []link
	anchors map[string]bool
}

// readPage reads a markdown file's links and heading anchors, outside
// fenced code blocks and inline code.
func readPage(t *testing.T, path string) page {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }() // read only
	p := page{anchors: map[string]bool{}}
	seen := map[string]int{}
	fenced := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if fenced {
			continue
		}
		if strings.HasPrefix(line, "#") {
			a := slug(strings.TrimLeft(line, "# "))
			if k := seen[a]; k > 0 {
				p.anchors[a+"-"+itoa(k)] = true
			} else {
				p.anchors[a] = true
			}
			seen[a]++
		}
		for _, m := range inlineLink.FindAllStringSubmatch(stripCode(line), -1) {
			p.links = append(p.links, link{target: m[1], line: n})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return p
}

// stripCode removes `inline code` spans, whose brackets are not links.
func stripCode(line string) string {
	var b strings.Builder
	in := false
	for _, r := range line {
		if r == '`' {
			in = !in
			continue
		}
		if !in {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// slug is the anchor GitHub gives a heading: lower case, punctuation
// (backquotes included) other than '-' and '_' dropped, spaces turned
// into '-'.
func slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r > 127:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}

func TestMarkdownLinksResolve(t *testing.T) {
	root := repoRoot(t)
	pages := map[string]page{}
	for _, f := range markdownFiles(t, root) {
		pages[f] = readPage(t, filepath.Join(root, f))
	}
	checked := 0
	for file, p := range pages {
		for _, l := range p.links {
			checked++
			if err := resolve(root, file, l.target, pages); err != "" {
				t.Errorf("%s:%d: link %q: %s", file, l.line, l.target, err)
			}
		}
	}
	t.Logf("%d links in %d markdown files", checked, len(pages))
}

// resolve says what is wrong with one link of file ("" = nothing).
func resolve(root, file, target string, pages map[string]page) string {
	u, err := url.Parse(target)
	if err != nil {
		return "not a URL: " + err.Error()
	}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return "no host"
		}
		return ""
	case "mailto":
		return ""
	case "":
	default:
		return "unexpected scheme " + u.Scheme
	}
	rel := filepath.Join(filepath.Dir(file), u.Path)
	if u.Path == "" {
		rel = file
	}
	if strings.HasPrefix(rel, "..") || filepath.IsAbs(u.Path) {
		return "points outside the repository"
	}
	if _, err := os.Stat(filepath.Join(root, rel)); err != nil {
		return "no such file in the repository"
	}
	if u.Fragment == "" {
		return ""
	}
	target2, ok := pages[filepath.ToSlash(rel)]
	if !ok {
		return "anchor on a page that is not tracked markdown"
	}
	if !target2.anchors[u.Fragment] {
		return "no heading with anchor #" + u.Fragment + " in " + rel
	}
	return ""
}

func TestSlug(t *testing.T) {
	for in, want := range map[string]string{
		"Contested Service addresses":         "contested-service-addresses",
		"What an agent trusts":                "what-an-agent-trusts",
		"`nodeagent --cleanup` and uninstall": "nodeagent---cleanup-and-uninstall",
		"Issue 12: a (hostile) cluster!":      "issue-12-a-hostile-cluster",
	} {
		if got := slug(in); got != want {
			t.Errorf("slug(%q) = %q, want %q", in, got, want)
		}
	}
}
